/* fixture-common.h: a minimal format for the plugin-loader fixtures
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

#define FIXTURE_TYPE_FORMAT (fixture_format_get_type ())
G_DECLARE_FINAL_TYPE (FixtureFormat, fixture_format, FIXTURE, FORMAT, SmeltFormat)

struct _FixtureFormat
{
  SmeltFormat parent_instance;
};

G_DEFINE_FINAL_TYPE (FixtureFormat, fixture_format, SMELT_TYPE_FORMAT)

static gboolean
fixture_format_plan (SmeltFormat  *format,
                     SmeltSource  *source,
                     GError      **error)
{
  return TRUE;
}

static void
fixture_format_class_init (FixtureFormatClass *klass)
{
  SMELT_FORMAT_CLASS (klass)->plan = fixture_format_plan;
}

static void
fixture_format_init (FixtureFormat *self)
{
}
