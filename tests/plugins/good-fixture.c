/* A plugin that loads: the loader must go on past the broken ones. */
#define FIXTURE_TYPE_NAME "FixtureGoodFixtureFormat"
#include "fixture-common.h"

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_format (plugin, "good-fixture", FIXTURE_TYPE_FORMAT, error);
}

SMELT_PLUGIN_DEFINE ("good-fixture", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
