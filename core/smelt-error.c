/* smelt-error.c: error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

G_DEFINE_QUARK (smelt-recipe-error-quark, smelt_recipe_error)
G_DEFINE_QUARK (smelt-model-error-quark, smelt_model_error)
G_DEFINE_QUARK (smelt-plugin-error-quark, smelt_plugin_error)
G_DEFINE_QUARK (smelt-format-error-quark, smelt_format_error)
G_DEFINE_QUARK (smelt-destination-error-quark, smelt_destination_error)
