/* A module whose descriptor disagrees with its .plugin file's Name. */
#define FIXTURE_TYPE_NAME "FixtureNameMismatchFormat"
#include "fixture-common.h"

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_format (plugin, "name-mismatch", FIXTURE_TYPE_FORMAT, error);
}

SMELT_PLUGIN_DEFINE ("some-other-name", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
