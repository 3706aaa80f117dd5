/* smelt-chat-template.h: a model's chat template, recognized among known
 * families, and what an Ollama Modelfile needs of it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-version.h>
#include <smelt/smelt-model.h>
#include <smelt/smelt-gguf.h>

G_BEGIN_DECLS

/**
 * SmeltChatMatch:
 * @SMELT_CHAT_MATCH_NONE: the model has no chat template
 * @SMELT_CHAT_MATCH_EXACT: the normalized template equals a known variant
 *   of a family
 * @SMELT_CHAT_MATCH_CHOSEN: the family was set with
 *   smelt_chat_template_set_family()
 * @SMELT_CHAT_MATCH_FALLBACK: an unknown template: a family recognized by
 *   its marker tokens, or a generic template, with a warning
 *
 * How a #SmeltChatTemplate came to its family (doc/chat-templates.md).
 */
typedef enum {
  SMELT_CHAT_MATCH_NONE,
  SMELT_CHAT_MATCH_EXACT,
  SMELT_CHAT_MATCH_CHOSEN,
  SMELT_CHAT_MATCH_FALLBACK,
} SmeltChatMatch;

#define SMELT_TYPE_CHAT_TEMPLATE (smelt_chat_template_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltChatTemplate, smelt_chat_template, SMELT, CHAT_TEMPLATE, GObject)

/**
 * SmeltChatTemplateClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltChatTemplate, a final type: it adds nothing
 * to #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltChatTemplate  *smelt_chat_template_new_for_model       (SmeltModel         *model,
                                                              GError            **error);
SMELT_AVAILABLE_IN_ALL
SmeltChatTemplate  *smelt_chat_template_new_for_gguf        (SmeltGgufFile      *file);
SMELT_AVAILABLE_IN_ALL
gboolean            smelt_chat_template_set_family          (SmeltChatTemplate  *self,
                                                              const char         *family_id,
                                                              GError            **error);
SMELT_AVAILABLE_IN_ALL
SmeltChatMatch      smelt_chat_template_get_match           (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_jinja           (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_source          (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_family          (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_family_name     (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_variant         (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_reason          (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_warning         (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_ollama_template (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_default_system  (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char * const *smelt_chat_template_get_stop_tokens     (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char * const *smelt_chat_template_get_eos_tokens      (SmeltChatTemplate  *self);
SMELT_AVAILABLE_IN_ALL
const char         *smelt_chat_template_get_bos_token       (SmeltChatTemplate  *self);

SMELT_AVAILABLE_IN_ALL
char              **smelt_chat_template_list_families       (void);
SMELT_AVAILABLE_IN_ALL
char               *smelt_chat_template_normalize           (const char         *jinja);

G_END_DECLS
