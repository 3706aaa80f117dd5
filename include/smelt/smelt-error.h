/* smelt-error.h: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

/**
 * SmeltRecipeError:
 * @SMELT_RECIPE_ERROR_PARSE: the recipe is not a valid key file
 * @SMELT_RECIPE_ERROR_MISSING_GROUP: a required group is missing
 * @SMELT_RECIPE_ERROR_MISSING_KEY: a required key is missing
 * @SMELT_RECIPE_ERROR_UNKNOWN_KEY: a key no plugin property matches
 * @SMELT_RECIPE_ERROR_UNKNOWN_GROUP: a group the recipe format does not know
 * @SMELT_RECIPE_ERROR_BAD_VALUE: a value of the wrong type or out of range
 * @SMELT_RECIPE_ERROR_UNKNOWN_PLUGIN: a format or destination no plugin provides
 * @SMELT_RECIPE_ERROR_CONFLICT: two exports would write the same file
 *
 * Errors in recipes. Every message names the file, group and key.
 */
typedef enum {
  SMELT_RECIPE_ERROR_PARSE,
  SMELT_RECIPE_ERROR_MISSING_GROUP,
  SMELT_RECIPE_ERROR_MISSING_KEY,
  SMELT_RECIPE_ERROR_UNKNOWN_KEY,
  SMELT_RECIPE_ERROR_UNKNOWN_GROUP,
  SMELT_RECIPE_ERROR_BAD_VALUE,
  SMELT_RECIPE_ERROR_UNKNOWN_PLUGIN,
  SMELT_RECIPE_ERROR_CONFLICT,
} SmeltRecipeError;

/**
 * SmeltModelError:
 * @SMELT_MODEL_ERROR_NOT_FOUND: a file the model needs is missing
 * @SMELT_MODEL_ERROR_INVALID: a file is malformed, truncated or lies about its content
 * @SMELT_MODEL_ERROR_UNSUPPORTED: valid input that smelt does not handle
 * @SMELT_MODEL_ERROR_MISMATCH: adapter and base do not fit together
 * @SMELT_MODEL_ERROR_NUMERIC: a merge produced a non-finite value
 *
 * Errors reading models, adapters and safetensors files.
 */
typedef enum {
  SMELT_MODEL_ERROR_NOT_FOUND,
  SMELT_MODEL_ERROR_INVALID,
  SMELT_MODEL_ERROR_UNSUPPORTED,
  SMELT_MODEL_ERROR_MISMATCH,
  SMELT_MODEL_ERROR_NUMERIC,
} SmeltModelError;

/**
 * SmeltPluginError:
 * @SMELT_PLUGIN_ERROR_KEYFILE: the .plugin file is malformed
 * @SMELT_PLUGIN_ERROR_LOAD: the module could not be loaded
 * @SMELT_PLUGIN_ERROR_NO_ENTRY: the module has no entry symbol
 * @SMELT_PLUGIN_ERROR_ABI: the module was built for another plugin ABI
 * @SMELT_PLUGIN_ERROR_NAME: the module's name does not match its .plugin file
 * @SMELT_PLUGIN_ERROR_INIT: the module's init function failed
 * @SMELT_PLUGIN_ERROR_FEATURE: a feature is missing or of the wrong kind
 *
 * Errors loading plugins. They are kept on the #SmeltPlugin.
 */
typedef enum {
  SMELT_PLUGIN_ERROR_KEYFILE,
  SMELT_PLUGIN_ERROR_LOAD,
  SMELT_PLUGIN_ERROR_NO_ENTRY,
  SMELT_PLUGIN_ERROR_ABI,
  SMELT_PLUGIN_ERROR_NAME,
  SMELT_PLUGIN_ERROR_INIT,
  SMELT_PLUGIN_ERROR_FEATURE,
} SmeltPluginError;

/**
 * SmeltFormatError:
 * @SMELT_FORMAT_ERROR_FAILED: generic format failure
 * @SMELT_FORMAT_ERROR_UNSUPPORTED: the format cannot represent this input
 * @SMELT_FORMAT_ERROR_OVERFLOW: a value does not fit the output type
 *
 * Errors from format plugins.
 */
typedef enum {
  SMELT_FORMAT_ERROR_FAILED,
  SMELT_FORMAT_ERROR_UNSUPPORTED,
  SMELT_FORMAT_ERROR_OVERFLOW,
} SmeltFormatError;

/**
 * SmeltDestinationError:
 * @SMELT_DESTINATION_ERROR_FAILED: generic failure
 * @SMELT_DESTINATION_ERROR_EXISTS: the destination holds files and may not be overwritten
 * @SMELT_DESTINATION_ERROR_CONFLICT: a file was created twice
 *
 * Errors from destination plugins.
 */
typedef enum {
  SMELT_DESTINATION_ERROR_FAILED,
  SMELT_DESTINATION_ERROR_EXISTS,
  SMELT_DESTINATION_ERROR_CONFLICT,
} SmeltDestinationError;

#define SMELT_RECIPE_ERROR (smelt_recipe_error_quark ())
#define SMELT_MODEL_ERROR (smelt_model_error_quark ())
#define SMELT_PLUGIN_ERROR (smelt_plugin_error_quark ())
#define SMELT_FORMAT_ERROR (smelt_format_error_quark ())
#define SMELT_DESTINATION_ERROR (smelt_destination_error_quark ())

SMELT_AVAILABLE_IN_ALL
GQuark smelt_recipe_error_quark (void);
SMELT_AVAILABLE_IN_ALL
GQuark smelt_model_error_quark (void);
SMELT_AVAILABLE_IN_ALL
GQuark smelt_plugin_error_quark (void);
SMELT_AVAILABLE_IN_ALL
GQuark smelt_format_error_quark (void);
SMELT_AVAILABLE_IN_ALL
GQuark smelt_destination_error_quark (void);

G_END_DECLS
