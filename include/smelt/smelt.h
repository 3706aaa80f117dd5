/* smelt.h: the umbrella header of libsmelt
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#define SMELT_INSIDE
#include <smelt/smelt-version.h>
#include <smelt/smelt-enums.h>
#include <smelt/smelt-error.h>
#include <smelt/smelt-dtype.h>
#include <smelt/smelt-utils.h>
#include <smelt/smelt-tensor.h>
#include <smelt/smelt-safetensors.h>
#include <smelt/smelt-gguf.h>
#include <smelt/smelt-bnb4.h>
#include <smelt/smelt-quality.h>
#include <smelt/smelt-model.h>
#include <smelt/smelt-chat-template.h>
#include <smelt/smelt-adapter.h>
#include <smelt/smelt-source.h>
#include <smelt/smelt-destination.h>
#include <smelt/smelt-format.h>
#include <smelt/smelt-shard-set.h>
#include <smelt/smelt-plugin.h>
#include <smelt/smelt-registry.h>
#include <smelt/smelt-recipe.h>
#include <smelt/smelt-export-job.h>
#undef SMELT_INSIDE
