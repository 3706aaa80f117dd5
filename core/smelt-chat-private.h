/* smelt-chat-private.h: the table of chat-template families
 * (data/chat-templates, compiled in as a GResource)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* One real template of a family, as its models publish it. */
typedef struct {
  char *file;         /* "qwen2.5.jinja", under jinja/ in the table */
  char *jinja;
  char *normalized;   /* smelt_chat_template_normalize (jinja) */
} SmeltChatVariant;

typedef struct {
  char      *id;               /* "llama3.1" */
  char      *name;             /* "Llama 3.1/3.2/3.3" */
  char      *ollama;           /* the Go template, for Ollama's TEMPLATE */
  char      *default_system;   /* nullable: the system prompt the template adds */
  GStrv      stops;            /* end-of-turn strings of the format */
  GStrv      markers;          /* strings that, all present, suggest the family */
  gboolean   fold_system;      /* no system role: the system prompt opens the first user turn */
  char      *bos_token;        /* the tokens the family's models use, for tests */
  char      *eos_token;
  GPtrArray *variants;         /* of SmeltChatVariant */
} SmeltChatFamily;

/* The families in table order (data/chat-templates/index), loaded once;
 * never NULL. */
GPtrArray             *_smelt_chat_families             (void);
const SmeltChatFamily *_smelt_chat_family_lookup        (const char *id);
/* the template of the last-resort fallback, and its stops */
const char            *_smelt_chat_generic_template     (void);
const char * const    *_smelt_chat_generic_stops        (void);

G_END_DECLS
