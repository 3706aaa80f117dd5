/* smelt-version.c: run-time version
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

/**
 * smelt_get_major_version:
 *
 * Gets the major version of the running libsmelt.
 *
 * Returns: the major version of the running libsmelt
 */
guint
smelt_get_major_version (void)
{
  return SMELT_MAJOR_VERSION;
}

/**
 * smelt_get_minor_version:
 *
 * Gets the minor version of the running libsmelt.
 *
 * Returns: the minor version of the running libsmelt
 */
guint
smelt_get_minor_version (void)
{
  return SMELT_MINOR_VERSION;
}

/**
 * smelt_get_micro_version:
 *
 * Gets the micro version of the running libsmelt.
 *
 * Returns: the micro version of the running libsmelt
 */
guint
smelt_get_micro_version (void)
{
  return SMELT_MICRO_VERSION;
}
