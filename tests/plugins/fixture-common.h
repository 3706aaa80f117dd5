/* fixture-common.h: a minimal format for the plugin-loader fixtures
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

/* Each fixture registers its own type name (FIXTURE_TYPE_NAME), so that
 * several fixtures can be loaded into one process. */

static gboolean
fixture_format_plan (SmeltFormat  *format,
                     SmeltSource  *source,
                     GError      **error)
{
  return TRUE;
}

static void
fixture_format_class_init (gpointer klass,
                           gpointer data)
{
  SMELT_FORMAT_CLASS (klass)->plan = fixture_format_plan;
}

G_GNUC_UNUSED static GType
fixture_format_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_type_register_static_simple (SMELT_TYPE_FORMAT, FIXTURE_TYPE_NAME,
                                                             sizeof (SmeltFormatClass),
                                                             fixture_format_class_init,
                                                             sizeof (SmeltFormat), NULL, 0));
  return type;
}

#define FIXTURE_TYPE_FORMAT (fixture_format_get_type ())
