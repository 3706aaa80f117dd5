/* A plugin whose .plugin file declares a feature init never registers. */
#define FIXTURE_TYPE_NAME "FixtureMissingFeatureFormat"
#include "fixture-common.h"

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_format (plugin, "missing-feature", FIXTURE_TYPE_FORMAT, error);
}

SMELT_PLUGIN_DEFINE ("missing-feature", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
