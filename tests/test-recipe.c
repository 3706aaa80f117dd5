/* test-recipe.c: recipes: keys, types, errors, overrides
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "smelt-private.h"

static SmeltRecipe *
parse (const char *text)
{
  g_autoptr(GError) error = NULL;
  SmeltRecipe *r = smelt_recipe_new_from_data (text, -1, "/tmp", &error);

  g_assert_no_error (error);
  return r;
}

static const char *base_recipe =
  "[Recipe]\nName=t\n"
  "[Source]\nModel=model\nAdapters=a;b\nAdapterWeights=1.0;0.5\n"
  "[Destination out]\nPlugin=localfs\nPath=out\n"
  "[Export merged]\nFormat=merged16\nDestination=out\n";

static void
test_valid (void)
{
  g_autoptr(SmeltRecipe) r = parse (base_recipe);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) adapters = smelt_recipe_get_adapters (r);
  g_autoptr(GArray) weights = NULL;
  g_autofree char *model = smelt_recipe_get_model (r);

  g_assert_true (smelt_recipe_validate (r, NULL, &error));
  g_assert_no_error (error);
  /* relative paths resolve against the recipe's folder */
  g_assert_cmpstr (model, ==, "/tmp/model");
  g_assert_cmpuint (g_strv_length (adapters), ==, 2);
  g_assert_cmpstr (adapters[1], ==, "/tmp/b");
  g_assert_true (smelt_recipe_get_adapter_weights (r, &weights, &error));
  g_assert_cmpfloat (g_array_index (weights, double, 1), ==, 0.5);
}

static void
expect_error (const char *text,
              const char *set,
              int         code,
              const char *fragment)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltRecipe) r = smelt_recipe_new_from_data (text, -1, "/tmp", &error);

  if (r != NULL && set != NULL)
    smelt_recipe_override (r, set, &error);
  if (r != NULL && error == NULL)
    smelt_recipe_validate (r, NULL, &error);
  g_assert_error (error, SMELT_RECIPE_ERROR, code);
  if (strstr (error->message, fragment) == NULL)
    g_error ("“%s” not in “%s”", fragment, error->message);
}

static void
test_errors (void)
{
  g_autofree char *unknown = g_strconcat (base_recipe, "MaxShardSise=1GB\n", NULL);
  g_autofree char *bad_enum = g_strconcat (base_recipe, "DType=fp8\n", NULL);
  g_autofree char *bad_group = g_strconcat (base_recipe, "[Exports x]\nFormat=merged16\n", NULL);

  expect_error (unknown, NULL, SMELT_RECIPE_ERROR_UNKNOWN_KEY, "[Export merged] unknown key “MaxShardSise”; did you mean “MaxShardSize”?");
  expect_error (bad_enum, NULL, SMELT_RECIPE_ERROR_BAD_VALUE, "DType=fp8: expected one of auto, bf16, fp16");
  expect_error (base_recipe, "out.Overwrite=yes please", SMELT_RECIPE_ERROR_BAD_VALUE, "Overwrite=yes please: expected true or false");
  expect_error (bad_group, NULL, SMELT_RECIPE_ERROR_UNKNOWN_GROUP, "unknown group [Exports x]");
  expect_error (base_recipe, "Source.Adapter=x", SMELT_RECIPE_ERROR_UNKNOWN_KEY, "did you mean “Adapters”?");
  expect_error (base_recipe, "merged.Formt=x", SMELT_RECIPE_ERROR_UNKNOWN_KEY, "“Formt”");
  expect_error (base_recipe, "nothing.Key=x", SMELT_RECIPE_ERROR_MISSING_GROUP, "no export or destination named “nothing”");
  expect_error (base_recipe, "noequals", SMELT_RECIPE_ERROR_BAD_VALUE, "expected NAME.Key=Value");
  expect_error (base_recipe, "Source.AdapterWeights=1;x", SMELT_RECIPE_ERROR_BAD_VALUE, "“x” is not a number");
  expect_error (base_recipe, "Source.AdapterWeights=1", SMELT_RECIPE_ERROR_BAD_VALUE, "1 weights for 2 adapters");
  expect_error (base_recipe, "merged.Format=merged61", SMELT_RECIPE_ERROR_UNKNOWN_PLUGIN, "did you mean “merged16”?");
  expect_error (base_recipe, "merged.Destination=elsewhere", SMELT_RECIPE_ERROR_MISSING_GROUP, "no [Destination elsewhere]");
  expect_error ("[Recipe]\nName=x\n[Source]\nModel=m\n", NULL, SMELT_RECIPE_ERROR_MISSING_GROUP, "nothing to do");
  expect_error ("[Source]\nAdapters=a\n[Export e]\nFormat=merged16\n", NULL, SMELT_RECIPE_ERROR_MISSING_KEY, "Model=");
  expect_error ("not a key file", NULL, SMELT_RECIPE_ERROR_PARSE, "(recipe)");
  {
    g_autofree char *dup_key = g_strconcat (base_recipe, "DType=bf16\nDType=fp16\n", NULL);
    g_autofree char *dup_group = g_strconcat (base_recipe, "[Export merged]\nDType=bf16\n", NULL);

    expect_error (dup_key, NULL, SMELT_RECIPE_ERROR_PARSE, "(recipe):14: [Export merged] DType is set again (first at line 13)");
    expect_error (dup_group, NULL, SMELT_RECIPE_ERROR_PARSE, "(recipe):13: group [Export merged] appears again (first at line 10)");
  }
}

static void
test_override_and_properties (void)
{
  g_autoptr(SmeltRecipe) r = parse (base_recipe);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) formats = NULL;
  g_autoptr(GPtrArray) dests = NULL;
  g_autofree char *size = NULL;
  g_autofree char *path = NULL;
  gboolean overwrite;
  int dtype;

  g_assert_true (smelt_recipe_override (r, "merged.MaxShardSize=2GB", &error));
  g_assert_true (smelt_recipe_override (r, "merged.DType=FP16", &error));
  g_assert_true (smelt_recipe_override (r, "out.Overwrite=true", &error));
  g_assert_true (_smelt_recipe_instantiate (r, smelt_registry_get_default (), &formats, &dests, &error));
  g_assert_no_error (error);
  g_object_get (g_ptr_array_index (formats, 0), "max-shard-size", &size, "dtype", &dtype, NULL);
  g_assert_cmpstr (size, ==, "2GB");
  g_assert_cmpint (dtype, ==, 2);
  g_object_get (g_ptr_array_index (dests, 0), "path", &path, "overwrite", &overwrite, NULL);
  /* a SMELT_PARAM_PATH property is resolved against the recipe folder */
  g_assert_cmpstr (path, ==, "/tmp/out");
  g_assert_true (overwrite);
  g_assert_true (smelt_format_get_destination (g_ptr_array_index (formats, 0)) == g_ptr_array_index (dests, 0));
}

static void
test_build_in_code (void)
{
  g_autoptr(SmeltRecipe) r = smelt_recipe_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr(SmeltRecipe) again = NULL;
  g_autoptr(GArray) weights = NULL;
  g_autofree char *dest = NULL;

  smelt_recipe_set_model (r, "/m");
  smelt_recipe_add_adapter (r, "/a1", 1.0);
  smelt_recipe_add_adapter (r, "/a2", 0.25);
  smelt_recipe_add_destination (r, "d", "localfs");
  g_assert_true (smelt_recipe_set_option (r, "d", "Path", "/out", &error));
  smelt_recipe_add_export (r, "e", "merged16", NULL);
  g_assert_true (smelt_recipe_validate (r, NULL, &error));
  g_assert_no_error (error);
  text = smelt_recipe_to_data (r, NULL);
  again = parse (text);
  g_assert_true (smelt_recipe_get_adapter_weights (again, &weights, &error));
  g_assert_cmpuint (weights->len, ==, 2);
  g_assert_cmpfloat (g_array_index (weights, double, 1), ==, 0.25);
  /* the only destination is used when an export names none */
  dest = smelt_recipe_get_export_destination (again, "e");
  g_assert_cmpstr (dest, ==, "d");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/recipe/valid", test_valid);
  g_test_add_func ("/recipe/errors", test_errors);
  g_test_add_func ("/recipe/override-and-properties", test_override_and_properties);
  g_test_add_func ("/recipe/build-in-code", test_build_in_code);
  return g_test_run ();
}
