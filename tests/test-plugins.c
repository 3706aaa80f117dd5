/* test-plugins.c: the loader survives every kind of broken plugin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <smelt/smelt.h>

/* Each broken plugin is loaded in a subprocess: a loader bug that crashes
 * must fail that case, not take the whole test binary down. */

static SmeltRegistry *
fixture_registry (void)
{
  const char *paths[] = { FIXTURE_PLUGIN_DIR, NULL };

  return smelt_registry_new (paths);
}

typedef struct {
  const char *name;
  int         code;
  const char *fragment;   /* expected in the message */
} Case;

static const Case cases[] = {
  { "abi-too-new", SMELT_PLUGIN_ERROR_ABI, "rebuild the plugin" },
  { "no-entry", SMELT_PLUGIN_ERROR_NO_ENTRY, "smelt_plugin_get_desc" },
  { "name-mismatch", SMELT_PLUGIN_ERROR_NAME, "some-other-name" },
  { "init-fails", SMELT_PLUGIN_ERROR_INIT, "no frobnicator found" },
  { "unresolved-symbol", SMELT_PLUGIN_ERROR_LOAD, "smelt_fixture_function_that_does_not_exist" },
  { "missing-feature", SMELT_PLUGIN_ERROR_FEATURE, "never-registered" },
};

static void
check_broken (gconstpointer data)
{
  const Case *c = data;

  if (g_test_subprocess ())
    {
      g_autoptr(SmeltRegistry) registry = fixture_registry ();
      SmeltPlugin *plugin = smelt_registry_lookup_plugin (registry, c->name);
      g_autoptr(GError) error = NULL;

      g_assert_nonnull (plugin);
      g_assert_cmpint (smelt_plugin_get_state (plugin), ==, SMELT_PLUGIN_STATE_LISTED);
      g_assert_false (smelt_plugin_load (plugin, &error));
      g_assert_error (error, SMELT_PLUGIN_ERROR, c->code);
      g_assert_nonnull (strstr (error->message, c->fragment));
      g_assert_cmpint (smelt_plugin_get_state (plugin), ==, SMELT_PLUGIN_STATE_ERROR);
      g_assert_nonnull (smelt_plugin_get_error (plugin));
      /* the error is kept: a second load fails the same way, without reloading */
      g_clear_error (&error);
      g_assert_false (smelt_plugin_load (plugin, &error));
      g_assert_error (error, SMELT_PLUGIN_ERROR, c->code);
      /* and the core goes on: a good plugin still loads afterwards */
      g_assert_true (smelt_plugin_load (smelt_registry_lookup_plugin (registry, "good-fixture"), NULL));
      g_printerr ("%s: %s\n", c->name, smelt_plugin_get_error (plugin)->message);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_bad_keyfile (void)
{
  g_autoptr(SmeltRegistry) registry = fixture_registry ();
  SmeltPlugin *plugin = smelt_registry_lookup_plugin (registry, "bad-keyfile");

  /* listed under its file name, with the parse error, never loaded */
  g_assert_nonnull (plugin);
  g_assert_cmpint (smelt_plugin_get_state (plugin), ==, SMELT_PLUGIN_STATE_ERROR);
  g_assert_error ((GError *) smelt_plugin_get_error (plugin), SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE);
  g_assert_nonnull (strstr (smelt_plugin_get_error (plugin)->message, "bad-keyfile.plugin"));
}

static void
test_list_model (void)
{
  g_autoptr(SmeltRegistry) registry = fixture_registry ();
  GListModel *list = G_LIST_MODEL (registry);
  g_auto(GStrv) formats = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltFormat) format = NULL;

  g_assert_true (g_list_model_get_item_type (list) == SMELT_TYPE_PLUGIN);
  /* 9 modules (7 for the loader, two-pass for the job test, stream-dest
   * in a subfolder for the formats' tests) + the unparsable keyfile;
   * listing loads nothing */
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, 10);
  for (guint i = 0; i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(SmeltPlugin) p = g_list_model_get_item (list, i);

      g_assert_cmpint (smelt_plugin_get_state (p), !=, SMELT_PLUGIN_STATE_LOADED);
    }
  formats = smelt_registry_list_features (registry, SMELT_FEATURE_FORMAT);
  g_assert_true (g_strv_contains ((const char * const *) formats, "good-fixture"));
  format = smelt_registry_create_format (registry, "good-fixture", &error);
  g_assert_no_error (error);
  g_assert_true (SMELT_IS_FORMAT (format));
  g_clear_object (&format);
  format = smelt_registry_create_format (registry, "good-fixtur", &error);
  g_assert_null (format);
  g_assert_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_UNKNOWN_PLUGIN);
  g_assert_nonnull (strstr (error->message, "did you mean “good-fixture”"));
}

static void
test_search_order (void)
{
  /* SMELT_PLUGIN_PATH comes first: the same name found later is ignored */
  const char *paths[] = { FIXTURE_PLUGIN_DIR, FIXTURE_PLUGIN_DIR, NULL };
  g_autoptr(SmeltRegistry) registry = smelt_registry_new (paths);

  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (registry)), ==, 10);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/plugins/broken/%s", cases[i].name);
      g_test_add_data_func (path, &cases[i], check_broken);
    }
  g_test_add_func ("/plugins/bad-keyfile", test_bad_keyfile);
  g_test_add_func ("/plugins/list-model", test_list_model);
  g_test_add_func ("/plugins/search-order", test_search_order);
  return g_test_run ();
}
