/* smelt-chat-normalize.c: a Jinja chat template reduced to the form that
 * decides what it renders, so that templates from the wild that differ
 * only in layout compare equal
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-chat-private.h"

/* The rules (doc/chat-templates.md, "Normalization"):
 *
 *  1. CRLF becomes LF.
 *  2. Whitespace control is applied as transformers' Jinja environment
 *     applies it (trim_blocks and lstrip_blocks on, as in
 *     apply_chat_template): "{%-"/"-%}" (and the same on {{ }} and {# #})
 *     strip the whitespace beside the tag, a block or comment tag alone on
 *     its line loses its indentation, the newline after a block or comment
 *     tag goes; then the markers themselves are dropped. A single trailing
 *     newline goes, as Jinja drops it.
 *  3. Comments are dropped.
 *  4. Inside tags, code is split into tokens joined by one space: string
 *     literals are rewritten with double quotes and one escape style,
 *     subscripts by a constant name (message['role']) become attribute
 *     access (message.role).
 *  5. An output tag holding a single string literal ({{ '<|im_end|>\n' }})
 *     becomes the text it outputs, merged with the text around it.
 */

typedef enum {
  SEG_TEXT,
  SEG_EXPR,      /* {{ }} */
  SEG_BLOCK,     /* {% %} */
  SEG_COMMENT,   /* {# #} */
} SegKind;

typedef struct {
  SegKind  kind;
  GString *text;       /* the text, or the code between the delimiters */
  gboolean trim_left;  /* {{- {%- {#- */
  gboolean trim_right; /* -}} -%} -#} */
  gboolean keep_left;  /* {%+: no lstrip_blocks */
} Seg;

static void
seg_free (gpointer data)
{
  Seg *s = data;

  g_string_free (s->text, TRUE);
  g_free (s);
}

static Seg *
seg_new (SegKind     kind,
         const char *start,
         gsize       len)
{
  Seg *s = g_new0 (Seg, 1);

  s->kind = kind;
  s->text = g_string_new_len (start, len);
  return s;
}

/* The end of the tag whose code starts at @p: the closing delimiter
 * outside string literals, or NULL when the tag never closes. */
static const char *
find_tag_end (const char *p,
              char        close)
{
  char quote = 0;

  for (; *p; p++)
    {
      if (quote)
        {
          if (*p == '\\' && p[1])
            p++;
          else if (*p == quote)
            quote = 0;
          continue;
        }
      if (close != '#' && (*p == '\'' || *p == '"'))
        quote = *p;
      else if (*p == close && p[1] == '}')
        return p;
    }
  return NULL;
}

static GPtrArray *
split_segments (const char *t)
{
  GPtrArray *segs = g_ptr_array_new_with_free_func (seg_free);
  const char *p = t, *text_start = t;

  while (*p)
    {
      SegKind kind;
      char close;
      const char *code, *end, *code_end;
      Seg *s;

      if (p[0] != '{' || (p[1] != '{' && p[1] != '%' && p[1] != '#'))
        {
          p++;
          continue;
        }
      kind = p[1] == '{' ? SEG_EXPR : p[1] == '%' ? SEG_BLOCK : SEG_COMMENT;
      close = p[1] == '{' ? '}' : p[1];
      code = p + 2;
      end = find_tag_end (code, close);
      if (end == NULL)
        break;   /* an unclosed tag: the rest is text */
      if (p > text_start)
        g_ptr_array_add (segs, seg_new (SEG_TEXT, text_start, p - text_start));
      code_end = end;
      s = seg_new (kind, "", 0);
      if (*code == '-')
        s->trim_left = TRUE, code++;
      else if (*code == '+')
        s->keep_left = TRUE, code++;
      if (code_end > code && code_end[-1] == '-')
        s->trim_right = TRUE, code_end--;
      else if (code_end > code && code_end[-1] == '+')
        code_end--;
      if (code_end > code)
        g_string_append_len (s->text, code, code_end - code);
      g_ptr_array_add (segs, s);
      p = end + 2;
      text_start = p;
    }
  if (*text_start)
    g_ptr_array_add (segs, seg_new (SEG_TEXT, text_start, strlen (text_start)));
  return segs;
}

static Seg *
text_at (GPtrArray *segs,
         gint       i)
{
  Seg *s;

  if (i < 0 || (guint) i >= segs->len)
    return NULL;
  s = g_ptr_array_index (segs, i);
  return s->kind == SEG_TEXT ? s : NULL;
}

static void
strip_trailing_space (GString *s)
{
  gsize n = s->len;

  while (n > 0 && g_ascii_isspace (s->str[n - 1]))
    n--;
  g_string_truncate (s, n);
}

static void
strip_leading_space (GString *s)
{
  gsize n = 0;

  while (n < s->len && g_ascii_isspace (s->str[n]))
    n++;
  g_string_erase (s, 0, n);
}

/* lstrip_blocks: spaces and tabs between the start of a line (or of the
 * template) and a block tag go. */
static void
lstrip_line (GString  *s,
             gboolean  at_template_start)
{
  gsize n = s->len;

  while (n > 0 && (s->str[n - 1] == ' ' || s->str[n - 1] == '\t'))
    n--;
  if ((n > 0 && s->str[n - 1] == '\n') || (n == 0 && at_template_start))
    g_string_truncate (s, n);
}

/* Two passes: what a tag strips before it is decided on the text as
 * written (a block tag "alone on its line" is judged before trim_blocks
 * takes the newline of the tag above), then what it strips after it. */
static void
apply_whitespace_control (GPtrArray *segs)
{
  for (guint i = 0; i < segs->len; i++)
    {
      Seg *s = g_ptr_array_index (segs, i);
      Seg *before = text_at (segs, (gint) i - 1);

      if (s->kind == SEG_TEXT || before == NULL)
        continue;
      if (s->trim_left)
        strip_trailing_space (before->text);
      else if ((s->kind == SEG_BLOCK || s->kind == SEG_COMMENT) && !s->keep_left)
        lstrip_line (before->text, i == 1);
    }
  for (guint i = 0; i < segs->len; i++)
    {
      Seg *s = g_ptr_array_index (segs, i);
      Seg *after = text_at (segs, (gint) i + 1);

      if (s->kind == SEG_TEXT || after == NULL)
        continue;
      if (s->trim_right)
        strip_leading_space (after->text);
      else if ((s->kind == SEG_BLOCK || s->kind == SEG_COMMENT) &&
               after->text->len > 0 && after->text->str[0] == '\n')
        g_string_erase (after->text, 0, 1);
    }
}

/* ---- code inside tags ---------------------------------------------------- */

typedef enum {
  TOK_NAME,
  TOK_STRING,   /* text holds the decoded value */
  TOK_OTHER,
} TokKind;

typedef struct {
  TokKind  kind;
  char    *text;
} Tok;

static void
tok_clear (gpointer data)
{
  g_free (((Tok *) data)->text);
}

static gboolean
is_name (const char *s)
{
  if (!g_ascii_isalpha (*s) && *s != '_')
    return FALSE;
  for (s++; *s; s++)
    if (!g_ascii_isalnum (*s) && *s != '_')
      return FALSE;
  return TRUE;
}

/* A string literal at @p (after its opening quote) decoded as Python
 * decodes the escapes chat templates use; returns the end of the
 * literal. */
static const char *
decode_string (const char *p,
               char        quote,
               GString    *out)
{
  for (; *p && *p != quote; p++)
    {
      if (*p != '\\' || p[1] == '\0')
        {
          g_string_append_c (out, *p);
          continue;
        }
      p++;
      switch (*p)
        {
        case 'n': g_string_append_c (out, '\n'); break;
        case 't': g_string_append_c (out, '\t'); break;
        case 'r': g_string_append_c (out, '\r'); break;
        case '\\': case '\'': case '"': g_string_append_c (out, *p); break;
        default:
          g_string_append_c (out, '\\');
          g_string_append_c (out, *p);
        }
    }
  return *p ? p + 1 : p;
}

static GArray *
tokenize (const char *code)
{
  GArray *toks = g_array_new (FALSE, FALSE, sizeof (Tok));
  static const char * const two[] = { "==", "!=", "<=", ">=", "//", "**", NULL };
  const char *p = code;

  g_array_set_clear_func (toks, tok_clear);
  while (*p)
    {
      Tok t = { TOK_OTHER, NULL };
      const char *start = p;

      if (g_ascii_isspace (*p))
        {
          p++;
          continue;
        }
      if (*p == '\'' || *p == '"')
        {
          GString *s = g_string_new (NULL);

          p = decode_string (p + 1, *p, s);
          t.kind = TOK_STRING;
          t.text = g_string_free (s, FALSE);
        }
      else if (g_ascii_isalpha (*p) || *p == '_')
        {
          while (g_ascii_isalnum (*p) || *p == '_')
            p++;
          t.kind = TOK_NAME;
          t.text = g_strndup (start, p - start);
        }
      else if (g_ascii_isdigit (*p))
        {
          while (g_ascii_isalnum (*p) || *p == '.')
            p++;
          t.text = g_strndup (start, p - start);
        }
      else
        {
          gsize len = 1;

          for (guint i = 0; two[i]; i++)
            if (strncmp (p, two[i], 2) == 0)
              len = 2;
          p += len;
          t.text = g_strndup (start, len);
        }
      g_array_append_val (toks, t);
    }
  return toks;
}

static gboolean
tok_is (const Tok  *t,
        const char *text)
{
  return t->kind == TOK_OTHER && g_str_equal (t->text, text);
}

static void
append_quoted (GString    *out,
               const char *s)
{
  g_string_append_c (out, '"');
  for (; *s; s++)
    switch (*s)
      {
      case '\n': g_string_append (out, "\\n"); break;
      case '\t': g_string_append (out, "\\t"); break;
      case '\r': g_string_append (out, "\\r"); break;
      case '"': g_string_append (out, "\\\""); break;
      case '\\': g_string_append (out, "\\\\"); break;
      default: g_string_append_c (out, *s);
      }
  g_string_append_c (out, '"');
}

/* Tokens joined by single spaces, x['name'] written x.name. */
static void
append_code (GString *out,
             GArray  *toks)
{
  gboolean first = TRUE;

  for (guint i = 0; i < toks->len; i++)
    {
      Tok *t = &g_array_index (toks, Tok, i);

      if (!first)
        g_string_append_c (out, ' ');
      first = FALSE;
      if (i > 0 && i + 2 < toks->len && tok_is (t, "[") &&
          g_array_index (toks, Tok, i + 1).kind == TOK_STRING &&
          is_name (g_array_index (toks, Tok, i + 1).text) &&
          tok_is (&g_array_index (toks, Tok, i + 2), "]"))
        {
          Tok *prev = &g_array_index (toks, Tok, i - 1);

          if (prev->kind == TOK_NAME || tok_is (prev, ")") || tok_is (prev, "]"))
            {
              g_string_append (out, ". ");
              g_string_append (out, g_array_index (toks, Tok, i + 1).text);
              i += 2;
              continue;
            }
        }
      if (t->kind == TOK_STRING)
        append_quoted (out, t->text);
      else
        g_string_append (out, t->text);
    }
}

/**
 * smelt_chat_template_normalize:
 * @jinja: a Jinja chat template
 *
 * Reduces a chat template to the form smelt compares templates in: the
 * whitespace that Jinja (with transformers' trim_blocks and lstrip_blocks)
 * would not output is gone, comments are gone, the code in tags is
 * re-spaced with one quote style, and literal-only output tags become
 * text. Two templates with the same normal form render the same text.
 * doc/chat-templates.md lists the rules.
 *
 * Returns: (transfer full): the normal form
 */
char *
smelt_chat_template_normalize (const char *jinja)
{
  g_autoptr(GPtrArray) segs = NULL;
  g_autoptr(GString) out = g_string_new (NULL);
  g_autofree char *unix_text = NULL;
  gboolean in_text = FALSE;
  gsize text_start = 0;

  g_return_val_if_fail (jinja != NULL, NULL);

  {
    g_auto(GStrv) lines = g_strsplit (jinja, "\r\n", -1);
    unix_text = g_strjoinv ("\n", lines);
  }
  segs = split_segments (unix_text);
  apply_whitespace_control (segs);

  for (guint i = 0; i < segs->len; i++)
    {
      Seg *s = g_ptr_array_index (segs, i);
      g_autoptr(GArray) toks = NULL;

      if (s->kind == SEG_COMMENT)
        continue;
      if (s->kind == SEG_TEXT)
        {
          in_text = TRUE;
          g_string_append_len (out, s->text->str, s->text->len);
          continue;
        }
      toks = tokenize (s->text->str);
      if (s->kind == SEG_EXPR && toks->len == 1 &&
          g_array_index (toks, Tok, 0).kind == TOK_STRING)
        {
          in_text = TRUE;
          g_string_append (out, g_array_index (toks, Tok, 0).text);
          continue;
        }
      in_text = FALSE;
      g_string_append (out, s->kind == SEG_EXPR ? "{{ " : "{% ");
      append_code (out, toks);
      g_string_append (out, s->kind == SEG_EXPR ? " }}" : " %}");
      text_start = out->len;
    }
  /* Jinja drops one trailing newline of the template */
  if (in_text && out->len > text_start && out->str[out->len - 1] == '\n')
    g_string_truncate (out, out->len - 1);
  return g_string_free (g_steal_pointer (&out), FALSE);
}
