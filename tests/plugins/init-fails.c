/* A plugin whose init function fails. */
#define FIXTURE_TYPE_NAME "FixtureInitFailsFormat"
#include "fixture-common.h"

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_INIT,
               "fixture refuses to start: no frobnicator found");
  return FALSE;
}

SMELT_PLUGIN_DEFINE ("init-fails", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
