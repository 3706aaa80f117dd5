/* A plugin that claims a newer plugin ABI minor than the core has. */
#define FIXTURE_TYPE_NAME "FixtureAbiTooNewFormat"
#include "fixture-common.h"

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_format (plugin, "abi-too-new", FIXTURE_TYPE_FORMAT, error);
}

__attribute__((visibility ("default"))) const SmeltPluginDesc *smelt_plugin_get_desc (void);

const SmeltPluginDesc *
smelt_plugin_get_desc (void)
{
  static const SmeltPluginDesc desc = {
    SMELT_PLUGIN_ABI_MAJOR, SMELT_PLUGIN_ABI_MINOR + 1,
    "abi-too-new", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests", { NULL, }
  };
  return &desc;
}
