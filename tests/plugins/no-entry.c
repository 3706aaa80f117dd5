/* A module that never used SMELT_PLUGIN_DEFINE. */
#define FIXTURE_TYPE_NAME "FixtureNoEntryFormat"
#include "fixture-common.h"

__attribute__((visibility ("default"))) int no_entry_here (void);

int
no_entry_here (void)
{
  return fixture_format_get_type () != 0;
}
