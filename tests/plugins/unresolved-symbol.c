/* A plugin calling a function nothing defines. It is linked without
 * -z defs on purpose; loading with immediate binding must fail cleanly. */
#define FIXTURE_TYPE_NAME "FixtureUnresolvedSymbolFormat"
#include "fixture-common.h"

extern int smelt_fixture_function_that_does_not_exist (void);

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  if (smelt_fixture_function_that_does_not_exist () != 0)
    return FALSE;
  return smelt_plugin_register_format (plugin, "unresolved-symbol", FIXTURE_TYPE_FORMAT, error);
}

SMELT_PLUGIN_DEFINE ("unresolved-symbol", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
