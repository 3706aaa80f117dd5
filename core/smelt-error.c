/* smelt-error.c: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

/**
 * smelt_recipe_error_quark:
 *
 * The error domain of recipe problems: syntax, unknown groups and keys, bad values, plugins a recipe names that do not exist; the codes are #SmeltRecipeError. Use
 * %SMELT_RECIPE_ERROR.
 *
 * Returns: the domain's #GQuark
 */
G_DEFINE_QUARK (smelt-recipe-error-quark, smelt_recipe_error)

/**
 * smelt_model_error_quark:
 *
 * The error domain of a base model or adapter that cannot be read: missing or malformed files, unsupported configurations; the codes are #SmeltModelError. Use
 * %SMELT_MODEL_ERROR.
 *
 * Returns: the domain's #GQuark
 */
G_DEFINE_QUARK (smelt-model-error-quark, smelt_model_error)

/**
 * smelt_plugin_error_quark:
 *
 * The error domain of plugins that cannot be loaded: ABI, entry point, name, init, features; the codes are #SmeltPluginError. Use
 * %SMELT_PLUGIN_ERROR.
 *
 * Returns: the domain's #GQuark
 */
G_DEFINE_QUARK (smelt-plugin-error-quark, smelt_plugin_error)

/**
 * smelt_format_error_quark:
 *
 * The error domain of format plugins that cannot write the input: unsupported tensors or settings, values out of range; the codes are #SmeltFormatError. Use
 * %SMELT_FORMAT_ERROR.
 *
 * Returns: the domain's #GQuark
 */
G_DEFINE_QUARK (smelt-format-error-quark, smelt_format_error)

/**
 * smelt_destination_error_quark:
 *
 * The error domain of destination plugins: failures, existing files, conflicts; the codes are #SmeltDestinationError. Use
 * %SMELT_DESTINATION_ERROR.
 *
 * Returns: the domain's #GQuark
 */
G_DEFINE_QUARK (smelt-destination-error-quark, smelt_destination_error)
