/* smelt-llama-harness: llama.cpp's own libraries as the oracle of the GGUF
 * tests.
 *
 * A small command-line program linked against the prebuilt libllama,
 * libggml and libggml-base fetched by tests/llama/fetch-test-deps.sh. Every
 * subcommand prints JSON on standard output (or raw bytes where it says so)
 * and exits 0 on success, 1 on failure and 2 on a usage error. llama.cpp's
 * log goes to standard error with --verbose; without it, its last lines are
 * printed only when a command fails. See tests/llama/README.md.
 *
 * Copyright 2025 the smelt authors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include <ggml.h>
#include <ggml-backend.h>
#include <gguf.h>
#include <llama.h>

#define EXIT_USAGE 2

/* ---------------------------------------------------------------------- */
/* llama.cpp / ggml log: kept in memory, shown on failure or with --verbose */

#define LOG_TAIL_BYTES 16384
#define LOG_TAIL_LINES 30

static gboolean verbose;
static GString *log_tail;

static void
log_cb (enum ggml_log_level level, const char *text, void *user_data)
{
  if (verbose)
    fputs (text, stderr);
  g_string_append (log_tail, text);
  /* keep only the end: enough for the lines that explain a failure */
  if (log_tail->len > 2 * LOG_TAIL_BYTES)
    g_string_erase (log_tail, 0, log_tail->len - LOG_TAIL_BYTES);
}

/* messages after the command (from the libraries' exit-time cleanup) */
static void
late_log_cb (enum ggml_log_level level, const char *text, void *user_data)
{
  if (verbose)
    fputs (text, stderr);
}

static void
finish_logging (void)
{
  llama_log_set (late_log_cb, NULL);
  g_string_free (log_tail, TRUE);
  log_tail = NULL;
}

static void
print_log_tail (void)
{
  g_auto (GStrv) lines = NULL;
  guint n, first;

  if (verbose || log_tail->len == 0)
    return;
  lines = g_strsplit (log_tail->str, "\n", -1);
  n = g_strv_length (lines);
  /* the text after the last newline is an empty string, or a line cut short */
  if (n > 0 && lines[n - 1][0] == '\0')
    n--;
  first = n > LOG_TAIL_LINES ? n - LOG_TAIL_LINES : 0;
  fputs ("--- last lines of the llama.cpp log ---\n", stderr);
  for (guint i = first; i < n; i++)
    fprintf (stderr, "%s\n", lines[i]);
  fputs ("---\n", stderr);
}

static int G_GNUC_PRINTF (1, 2)
fail (const char *format, ...)
{
  va_list args;

  print_log_tail ();
  fputs ("smelt-llama-harness: ", stderr);
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fputc ('\n', stderr);
  return EXIT_FAILURE;
}

static int G_GNUC_PRINTF (1, 2)
usage_error (const char *format, ...)
{
  va_list args;

  fputs ("smelt-llama-harness: ", stderr);
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fputs ("\n(run without arguments for the usage)\n", stderr);
  return EXIT_USAGE;
}

/* ---------------------------------------------------------------------- */
/* backends */

/* The CPU backend comes as libggml-cpu-<variant>.so files beside libggml,
 * loaded at run time. ggml looks next to the executable and in the working
 * directory by default, so point it at the folder libggml was loaded from
 * (or at the one file named by SMELT_LLAMA_CPU_BACKEND, to pin a variant). */
static void
load_backends (void)
{
  static gboolean loaded;
  const char *forced = g_getenv ("SMELT_LLAMA_CPU_BACKEND");
  Dl_info info;

  if (loaded)
    return;
  loaded = TRUE;

  if (forced != NULL && *forced != '\0')
    {
      if (ggml_backend_load (forced) == NULL)
        g_printerr ("smelt-llama-harness: cannot load %s\n", forced);
    }
  else if (dladdr ((void *) ggml_backend_load_all_from_path, &info) != 0 &&
           info.dli_fname != NULL)
    {
      g_autofree char *dir = g_path_get_dirname (info.dli_fname);
      ggml_backend_load_all_from_path (dir);
    }
  else
    {
      ggml_backend_load_all ();
    }
}

static gboolean
have_cpu_device (void)
{
  for (size_t i = 0; i < ggml_backend_dev_count (); i++)
    if (ggml_backend_dev_type (ggml_backend_dev_get (i)) == GGML_BACKEND_DEVICE_TYPE_CPU)
      return TRUE;
  return FALSE;
}

/* ---------------------------------------------------------------------- */
/* JSON output */

/* Appends BYTES as a JSON string. Bytes that are not valid UTF-8 become
 * U+FFFD; returns FALSE when that happened. */
static gboolean
json_string (GString *out, const char *bytes, size_t len)
{
  gboolean valid = TRUE;
  size_t i = 0;

  g_string_append_c (out, '"');
  while (i < len)
    {
      unsigned char c = (unsigned char) bytes[i];

      if (c < 0x80)
        {
          switch (c)
            {
            case '"': g_string_append (out, "\\\""); break;
            case '\\': g_string_append (out, "\\\\"); break;
            case '\n': g_string_append (out, "\\n"); break;
            case '\r': g_string_append (out, "\\r"); break;
            case '\t': g_string_append (out, "\\t"); break;
            default:
              if (c < 0x20 || c == 0x7f)
                g_string_append_printf (out, "\\u%04x", c);
              else
                g_string_append_c (out, (char) c);
            }
          i++;
          continue;
        }

      gunichar ch = g_utf8_get_char_validated (bytes + i, (gssize) (len - i));
      if (ch == (gunichar) -1 || ch == (gunichar) -2)
        {
          g_string_append (out, "\\ufffd");
          valid = FALSE;
          i++;
          continue;
        }
      size_t n = (size_t) g_utf8_skip[c];
      g_string_append_len (out, bytes + i, (gssize) n);
      i += n;
    }
  g_string_append_c (out, '"');
  return valid;
}

static void
json_cstring (GString *out, const char *s)
{
  json_string (out, s, strlen (s));
}

/* A string from a GGUF file: a JSON string when it is valid UTF-8, else
 * {"hex": "<its bytes>", "lossy": "<with U+FFFD>"}. */
static void
json_file_string (GString *out, const char *bytes, size_t len)
{
  g_autoptr (GString) lossy = g_string_new (NULL);

  if (json_string (lossy, bytes, len))
    {
      g_string_append_len (out, lossy->str, (gssize) lossy->len);
      return;
    }
  g_string_append (out, "{\"hex\": \"");
  for (size_t i = 0; i < len; i++)
    g_string_append_printf (out, "%02x", (unsigned char) bytes[i]);
  g_string_append (out, "\", \"lossy\": ");
  g_string_append_len (out, lossy->str, (gssize) lossy->len);
  g_string_append_c (out, '}');
}

/* Non-finite numbers are not JSON: they are written as the strings that
 * Python's float() and JavaScript's Number() read back. */
static void
json_double (GString *out, double v, int digits)
{
  if (isnan (v))
    g_string_append (out, "\"NaN\"");
  else if (isinf (v))
    g_string_append (out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  else
    g_string_append_printf (out, "%.*g", digits, v);
}

static void
json_float (GString *out, float v)
{
  json_double (out, v, 9);
}

static void
write_stdout (const GString *out)
{
  fwrite (out->str, 1, out->len, stdout);
  fflush (stdout);
}

/* ---------------------------------------------------------------------- */
/* input */

static GByteArray *
read_all (FILE *f)
{
  GByteArray *buf = g_byte_array_new ();
  guint8 chunk[65536];
  size_t n;

  while ((n = fread (chunk, 1, sizeof chunk, f)) > 0)
    g_byte_array_append (buf, chunk, (guint) n);
  if (ferror (f))
    {
      g_byte_array_unref (buf);
      return NULL;
    }
  return buf;
}

typedef struct
{
  const char *p;
  const char *end;
} Cursor;

static void
skip_ws (Cursor *c)
{
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static gboolean
read_hex4 (Cursor *c, guint *value)
{
  if (c->end - c->p < 4)
    return FALSE;
  *value = 0;
  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (c->p[i]);
      if (d < 0)
        return FALSE;
      *value = *value * 16 + (guint) d;
    }
  c->p += 4;
  return TRUE;
}

static void
append_unichar (GByteArray *s, gunichar ch)
{
  char utf8[6];
  int n = g_unichar_to_utf8 (ch, utf8);
  g_byte_array_append (s, (const guint8 *) utf8, (guint) n);
}

/* One JSON string at C->p (after the opening quote). The result keeps
 * embedded NULs, which is why the texts are byte arrays, not C strings. A
 * lone UTF-16 surrogate becomes U+FFFD, as in Python's
 * 'surrogatepass'-less round trips. */
static GByteArray *
parse_json_string (Cursor *c)
{
  g_autoptr (GByteArray) s = g_byte_array_new ();

  while (c->p < c->end && *c->p != '"')
    {
      if ((unsigned char) *c->p < 0x20)
        return NULL;
      if (*c->p != '\\')
        {
          g_byte_array_append (s, (const guint8 *) c->p, 1);
          c->p++;
          continue;
        }
      if (++c->p >= c->end)
        return NULL;
      char e = *c->p++;
      guint u, lo;
      switch (e)
        {
        case '"': case '\\': case '/':
          g_byte_array_append (s, (const guint8 *) &e, 1);
          break;
        case 'b': append_unichar (s, '\b'); break;
        case 'f': append_unichar (s, '\f'); break;
        case 'n': append_unichar (s, '\n'); break;
        case 'r': append_unichar (s, '\r'); break;
        case 't': append_unichar (s, '\t'); break;
        case 'u':
          if (!read_hex4 (c, &u))
            return NULL;
          if (u >= 0xd800 && u < 0xdc00 && c->end - c->p >= 6 &&
              c->p[0] == '\\' && c->p[1] == 'u')
            {
              Cursor save = *c;
              c->p += 2;
              if (read_hex4 (c, &lo) && lo >= 0xdc00 && lo < 0xe000)
                {
                  append_unichar (s, 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00));
                  break;
                }
              *c = save;
            }
          append_unichar (s, (u >= 0xd800 && u < 0xe000) ? 0xfffd : u);
          break;
        default:
          return NULL;
        }
    }
  if (c->p >= c->end)
    return NULL;
  c->p++; /* closing quote */
  return g_steal_pointer (&s);
}

/* Reads a JSON array of strings; NULL with *error set if it is not one. */
static GPtrArray *
parse_text_array (const GByteArray *json, char **error)
{
  g_autoptr (GPtrArray) texts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  Cursor c = { (const char *) json->data, (const char *) json->data + json->len };

  skip_ws (&c);
  if (c.p >= c.end || *c.p++ != '[')
    goto bad;
  skip_ws (&c);
  if (c.p < c.end && *c.p == ']')
    c.p++;
  else
    for (;;)
      {
        GByteArray *s;

        skip_ws (&c);
        if (c.p >= c.end || *c.p++ != '"' || (s = parse_json_string (&c)) == NULL)
          goto bad;
        g_ptr_array_add (texts, s);
        skip_ws (&c);
        if (c.p < c.end && *c.p == ',')
          {
            c.p++;
            continue;
          }
        if (c.p < c.end && *c.p == ']')
          {
            c.p++;
            break;
          }
        goto bad;
      }
  skip_ws (&c);
  if (c.p != c.end)
    goto bad;
  return g_steal_pointer (&texts);

bad:
  *error = g_strdup_printf ("standard input: not a JSON array of strings "
                            "(at byte %ld)", (long) (c.p - (const char *) json->data));
  return NULL;
}

static gboolean
parse_int64 (const char *s, gint64 min, gint64 max, gint64 *out)
{
  g_autoptr (GError) error = NULL;
  return g_ascii_string_to_signed (s, 10, min, max, out, &error);
}

/* ---------------------------------------------------------------------- */
/* names */

/* A ggml type by its ggml name ("q4_K", "f16", ...), case-insensitively;
 * GGML_TYPE_COUNT if there is none. */
static enum ggml_type
ggml_type_from_name (const char *name)
{
  for (int t = 0; t < GGML_TYPE_COUNT; t++)
    {
      const struct ggml_type_traits *traits = ggml_get_type_traits ((enum ggml_type) t);
      /* removed types keep a slot with no block size */
      if (traits->blck_size == 0 || traits->type_name == NULL)
        continue;
      if (g_ascii_strcasecmp (traits->type_name, name) == 0)
        return (enum ggml_type) t;
    }
  return GGML_TYPE_COUNT;
}

typedef struct
{
  const char *name;
  enum llama_ftype ftype;
} FtypeName;

/* the names llama-quantize accepts */
static const FtypeName ftype_names[] = {
  { "F32", LLAMA_FTYPE_ALL_F32 },
  { "F16", LLAMA_FTYPE_MOSTLY_F16 },
  { "BF16", LLAMA_FTYPE_MOSTLY_BF16 },
  { "Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0 },
  { "Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1 },
  { "Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0 },
  { "Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1 },
  { "Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0 },
  { "Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K },
  { "Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S },
  { "Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S },
  { "Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M },
  { "Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L },
  { "Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S },
  { "Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M },
  { "Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S },
  { "Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M },
  { "Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K },
  { "IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL },
  { "IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS },
  { "TQ1_0", LLAMA_FTYPE_MOSTLY_TQ1_0 },
  { "TQ2_0", LLAMA_FTYPE_MOSTLY_TQ2_0 },
  { "MXFP4_MOE", LLAMA_FTYPE_MOSTLY_MXFP4_MOE },
};

static gboolean
ftype_from_name (const char *name, enum llama_ftype *ftype)
{
  gint64 n;

  for (size_t i = 0; i < G_N_ELEMENTS (ftype_names); i++)
    if (g_ascii_strcasecmp (ftype_names[i].name, name) == 0)
      {
        *ftype = ftype_names[i].ftype;
        return TRUE;
      }
  /* or the number itself, for types without a name here */
  if (parse_int64 (name, 0, 1023, &n))
    {
      *ftype = (enum llama_ftype) n;
      return TRUE;
    }
  return FALSE;
}

/* ---------------------------------------------------------------------- */
/* llama helpers */

static struct llama_model *
load_model (const char *path, gboolean vocab_only)
{
  struct llama_model_params params = llama_model_default_params ();

  params.n_gpu_layers = 0;
  params.vocab_only = vocab_only;
  params.check_tensors = TRUE;
  /* plain weight layouts: no CPU-specific repacking of quantized weights */
  params.use_extra_bufts = FALSE;
  return llama_model_load_from_file (path, params);
}

/* llama_model_meta_val_str as a new string, NULL if the key is absent */
static char *
model_meta (const struct llama_model *model, const char *key)
{
  char small[256];
  int32_t n = llama_model_meta_val_str (model, key, small, sizeof small);

  if (n < 0)
    return NULL;
  if ((size_t) n < sizeof small)
    return g_strdup (small);
  char *big = g_malloc ((size_t) n + 1);
  llama_model_meta_val_str (model, key, big, (size_t) n + 1);
  return big;
}

static void
json_meta_field (GString *out, const struct llama_model *model, const char *field, const char *key)
{
  g_autofree char *value = model_meta (model, key);

  g_string_append_printf (out, ", \"%s\": ", field);
  if (value != NULL)
    json_cstring (out, value);
  else
    g_string_append (out, "null");
}

/* ---------------------------------------------------------------------- */
/* load */

static gboolean
gguf_strict_check (const char *path)
{
  struct gguf_init_params params = { .no_alloc = TRUE, .ctx = NULL };
  struct gguf_context *gguf = gguf_init_from_file (path, params);

  if (gguf == NULL)
    return FALSE;
  gguf_free (gguf);
  return TRUE;
}

static int
cmd_load (int argc, char **argv)
{
  g_autoptr (GString) out = g_string_new (NULL);
  struct llama_model *model;
  char desc[256];

  if (argc != 1)
    return usage_error ("load MODEL.gguf");
  if (!gguf_strict_check (argv[0]))
    return fail ("%s: gguf_init_from_file rejects the file", argv[0]);
  load_backends ();
  if (!have_cpu_device ())
    return fail ("no CPU backend could be loaded");
  model = load_model (argv[0], FALSE);
  if (model == NULL)
    return fail ("%s: llama_model_load_from_file failed", argv[0]);

  llama_model_desc (model, desc, sizeof desc);
  g_string_append_printf (out, "{\"n_vocab\": %d, \"n_embd\": %d, \"n_layer\": %d, "
                          "\"n_head\": %d, \"n_head_kv\": %d, \"n_ctx_train\": %d, "
                          "\"n_params\": %" G_GUINT64_FORMAT ", \"size\": %" G_GUINT64_FORMAT
                          ", \"ftype\": %d, \"desc\": ",
                          llama_vocab_n_tokens (llama_model_get_vocab (model)),
                          llama_model_n_embd (model), llama_model_n_layer (model),
                          llama_model_n_head (model), llama_model_n_head_kv (model),
                          llama_model_n_ctx_train (model),
                          (guint64) llama_model_n_params (model),
                          (guint64) llama_model_size (model),
                          (int) llama_model_ftype (model));
  json_cstring (out, desc);
  json_meta_field (out, model, "arch", "general.architecture");
  json_meta_field (out, model, "pre", "tokenizer.ggml.pre");
  g_string_append (out, "}\n");
  llama_model_free (model);
  write_stdout (out);
  return EXIT_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* logits */

typedef struct
{
  GArray *tokens;      /* llama_token */
  GPtrArray *loras;    /* char * */
  GArray *scales;      /* float, one per lora */
  const char *out;
  int threads;
} LogitsArgs;

static int
parse_logits_args (int argc, char **argv, const char **model_path, LogitsArgs *a)
{
  *model_path = NULL;
  for (int i = 0; i < argc; i++)
    {
      const char *arg = argv[i];
      const char *val = i + 1 < argc ? argv[i + 1] : NULL;
      gint64 n;

      if (g_str_equal (arg, "--tokens") && val != NULL)
        {
          g_auto (GStrv) parts = g_strsplit (val, ",", -1);
          for (char **p = parts; *p != NULL; p++)
            {
              if (!parse_int64 (g_strstrip (*p), 0, G_MAXINT32, &n))
                return usage_error ("--tokens: '%s' is not a token id", *p);
              llama_token t = (llama_token) n;
              g_array_append_val (a->tokens, t);
            }
          i++;
        }
      else if (g_str_equal (arg, "--lora") && val != NULL)
        {
          float one = 1.0f;
          g_ptr_array_add (a->loras, (gpointer) val);
          g_array_append_val (a->scales, one);
          i++;
        }
      else if (g_str_equal (arg, "--lora-scale") && val != NULL)
        {
          char *end;
          if (a->loras->len == 0)
            return usage_error ("--lora-scale must follow a --lora");
          float s = strtof (val, &end);
          if (*end != '\0' || end == val)
            return usage_error ("--lora-scale: '%s' is not a number", val);
          g_array_index (a->scales, float, a->scales->len - 1) = s;
          i++;
        }
      else if (g_str_equal (arg, "--out") && val != NULL)
        {
          a->out = val;
          i++;
        }
      else if (g_str_equal (arg, "--threads") && val != NULL)
        {
          if (!parse_int64 (val, 1, 256, &n))
            return usage_error ("--threads: '%s'", val);
          a->threads = (int) n;
          i++;
        }
      else if (arg[0] == '-')
        return usage_error ("logits: unknown or incomplete option %s", arg);
      else if (*model_path == NULL)
        *model_path = arg;
      else
        return usage_error ("logits: one model only");
    }
  if (*model_path == NULL || a->tokens->len == 0)
    return usage_error ("logits MODEL.gguf --tokens 1,2,3 [--lora A.gguf [--lora-scale S]]... "
                        "[--out FILE] [--threads N]");
  return EXIT_SUCCESS;
}

static struct llama_context *
new_reference_context (struct llama_model *model, uint32_t n_tokens, int threads)
{
  struct llama_context_params params = llama_context_default_params ();

  /* one batch, one sequence, every position an output */
  params.n_ctx = n_tokens;
  params.n_batch = n_tokens;
  params.n_ubatch = n_tokens;
  params.n_seq_max = 1;
  params.n_threads = threads;
  params.n_threads_batch = threads;
  /* the plain attention path with an F32 cache: nothing rounded to F16
   * between the layers' K/V and the attention */
  params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  params.type_k = GGML_TYPE_F32;
  params.type_v = GGML_TYPE_F32;
  params.offload_kqv = FALSE;
  params.op_offload = FALSE;
  params.no_perf = TRUE;
  params.embeddings = FALSE;
  return llama_init_from_model (model, params);
}

static int
run_logits (struct llama_model *model, const LogitsArgs *a,
            struct llama_adapter_lora **adapters)
{
  uint32_t n = a->tokens->len;
  struct llama_context *ctx = new_reference_context (model, n, a->threads);
  const int32_t n_vocab = llama_vocab_n_tokens (llama_model_get_vocab (model));
  g_autoptr (GString) out = g_string_new (NULL);
  struct llama_batch batch;
  int32_t rc;

  if (ctx == NULL)
    return fail ("llama_init_from_model failed");
  if (a->loras->len > 0 &&
      llama_set_adapters_lora (ctx, adapters, a->loras->len, (float *) a->scales->data) != 0)
    {
      llama_free (ctx);
      return fail ("llama_set_adapters_lora failed");
    }

  batch = llama_batch_init ((int32_t) n, 0, 1);
  for (uint32_t i = 0; i < n; i++)
    {
      batch.token[i] = g_array_index (a->tokens, llama_token, i);
      batch.pos[i] = (llama_pos) i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
  batch.n_tokens = (int32_t) n;
  rc = llama_decode (ctx, batch);
  llama_batch_free (batch);
  if (rc != 0)
    {
      llama_free (ctx);
      return fail ("llama_decode returned %d", rc);
    }

  FILE *f = NULL;
  if (a->out != NULL && (f = fopen (a->out, "wb")) == NULL)
    {
      int e = errno;
      llama_free (ctx);
      return fail ("%s: %s", a->out, g_strerror (e));
    }
  g_string_append_printf (out, "{\"n_tokens\": %u, \"n_vocab\": %d", n, n_vocab);
  if (f == NULL)
    g_string_append (out, ", \"logits\": [");
  for (uint32_t i = 0; i < n; i++)
    {
      const float *row = llama_get_logits_ith (ctx, (int32_t) i);
      if (row == NULL)
        {
          if (f != NULL)
            fclose (f);
          llama_free (ctx);
          return fail ("no logits for position %u", i);
        }
      if (f != NULL)
        {
          /* float32 little-endian: the host order on every platform the
           * prebuilt libraries exist for (x86-64) */
          if (fwrite (row, sizeof (float), (size_t) n_vocab, f) != (size_t) n_vocab)
            break;
          continue;
        }
      g_string_append (out, i == 0 ? "[" : ", [");
      for (int32_t k = 0; k < n_vocab; k++)
        {
          if (k > 0)
            g_string_append (out, ", ");
          json_float (out, row[k]);
        }
      g_string_append_c (out, ']');
    }
  llama_free (ctx);
  if (f != NULL)
    {
      gboolean write_failed = ferror (f) != 0;
      if (fclose (f) != 0 || write_failed)
        return fail ("%s: write error", a->out);
      g_string_append (out, ", \"out\": ");
      json_cstring (out, a->out);
    }
  else
    g_string_append_c (out, ']');
  g_string_append (out, "}\n");
  write_stdout (out);
  return EXIT_SUCCESS;
}

static int
cmd_logits (int argc, char **argv)
{
  LogitsArgs a = {
    .tokens = g_array_new (FALSE, FALSE, sizeof (llama_token)),
    .loras = g_ptr_array_new (),
    .scales = g_array_new (FALSE, FALSE, sizeof (float)),
    .out = NULL,
    .threads = 1,
  };
  g_autofree struct llama_adapter_lora **adapters = NULL;
  struct llama_model *model = NULL;
  const char *path;
  int rc = parse_logits_args (argc, argv, &path, &a);

  if (rc != EXIT_SUCCESS)
    goto out;
  rc = EXIT_FAILURE;
  if (!gguf_strict_check (path))
    {
      fail ("%s: gguf_init_from_file rejects the file", path);
      goto out;
    }
  load_backends ();
  model = load_model (path, FALSE);
  if (model == NULL)
    {
      fail ("%s: llama_model_load_from_file failed", path);
      goto out;
    }
  const int32_t n_vocab = llama_vocab_n_tokens (llama_model_get_vocab (model));
  for (guint i = 0; i < a.tokens->len; i++)
    if (g_array_index (a.tokens, llama_token, i) >= n_vocab)
      {
        fail ("token %d is outside the vocabulary (%d)", g_array_index (a.tokens, llama_token, i),
              n_vocab);
        goto out;
      }

  adapters = g_new0 (struct llama_adapter_lora *, a.loras->len + 1);
  for (guint i = 0; i < a.loras->len; i++)
    {
      const char *lora = g_ptr_array_index (a.loras, i);
      if (!gguf_strict_check (lora))
        {
          fail ("%s: gguf_init_from_file rejects the file", lora);
          goto out;
        }
      adapters[i] = llama_adapter_lora_init (model, lora);
      if (adapters[i] == NULL)
        {
          fail ("%s: llama_adapter_lora_init failed", lora);
          goto out;
        }
    }
  rc = run_logits (model, &a, adapters);

out:
  /* the adapters belong to the model, which frees them */
  if (model != NULL)
    llama_model_free (model);
  g_array_unref (a.tokens);
  g_ptr_array_unref (a.loras);
  g_array_unref (a.scales);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* tokenize */

static int
tokenize_one (const struct llama_vocab *vocab, const GByteArray *text, GString *out)
{
  int32_t cap = (int32_t) text->len + 16;
  g_autofree llama_token *tokens = g_new (llama_token, cap);
  int32_t n;

  if (text->len > G_MAXINT32)
    return fail ("text too long");
  n = llama_tokenize (vocab, (const char *) text->data, (int32_t) text->len, tokens, cap,
                      TRUE, TRUE);
  if (n < 0 && n != G_MININT32)
    {
      /* too small: -n is the count needed */
      cap = -n;
      g_free (tokens);
      tokens = g_new (llama_token, cap);
      n = llama_tokenize (vocab, (const char *) text->data, (int32_t) text->len, tokens, cap,
                          TRUE, TRUE);
    }
  if (n < 0)
    return fail ("llama_tokenize failed (%d)", n);
  g_string_append_c (out, '[');
  for (int32_t i = 0; i < n; i++)
    g_string_append_printf (out, i ? ", %d" : "%d", tokens[i]);
  g_string_append_c (out, ']');
  return EXIT_SUCCESS;
}

static int
cmd_tokenize (int argc, char **argv)
{
  g_autoptr (GByteArray) json = NULL;
  g_autoptr (GPtrArray) texts = NULL;
  g_autoptr (GString) out = g_string_new ("[");
  g_autofree char *error = NULL;
  struct llama_model *model;
  int rc = EXIT_SUCCESS;

  if (argc != 1)
    return usage_error ("tokenize MODEL.gguf < texts.json");
  if ((json = read_all (stdin)) == NULL)
    return fail ("cannot read standard input");
  if ((texts = parse_text_array (json, &error)) == NULL)
    return fail ("%s", error);
  if (!gguf_strict_check (argv[0]))
    return fail ("%s: gguf_init_from_file rejects the file", argv[0]);
  load_backends ();
  model = load_model (argv[0], TRUE);
  if (model == NULL)
    return fail ("%s: llama_model_load_from_file (vocab_only) failed", argv[0]);

  for (guint i = 0; i < texts->len && rc == EXIT_SUCCESS; i++)
    {
      if (i > 0)
        g_string_append (out, ", ");
      rc = tokenize_one (llama_model_get_vocab (model), g_ptr_array_index (texts, i), out);
    }
  llama_model_free (model);
  if (rc != EXIT_SUCCESS)
    return rc;
  g_string_append (out, "]\n");
  write_stdout (out);
  return EXIT_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* quantize / dequantize: ggml's reference routines on raw rows */

typedef struct
{
  enum ggml_type type;
  gint64 n_rows;
  gint64 n_per_row;
} RowsSpec;

static int
parse_rows_spec (char **argv, RowsSpec *spec)
{
  spec->type = ggml_type_from_name (argv[0]);
  if (spec->type == GGML_TYPE_COUNT)
    return usage_error ("'%s' is not a ggml type name (f32, f16, bf16, q4_0, ..., q6_K)", argv[0]);
  if (!parse_int64 (argv[1], 0, G_MAXINT32, &spec->n_rows))
    return usage_error ("N_ROWS: '%s'", argv[1]);
  if (!parse_int64 (argv[2], 1, G_MAXINT32, &spec->n_per_row))
    return usage_error ("N_PER_ROW: '%s'", argv[2]);
  if (spec->n_per_row % ggml_blck_size (spec->type) != 0)
    return fail ("N_PER_ROW %" G_GINT64_FORMAT " is not a multiple of %s's block size %"
                 G_GINT64_FORMAT, spec->n_per_row, ggml_type_name (spec->type),
                 ggml_blck_size (spec->type));
  return EXIT_SUCCESS;
}

static int
read_exact_stdin (GByteArray **data, size_t expected)
{
  *data = read_all (stdin);
  if (*data == NULL)
    return fail ("cannot read standard input");
  if ((*data)->len != expected)
    return fail ("standard input has %u bytes, expected %zu", (*data)->len, expected);
  return EXIT_SUCCESS;
}

static int
write_stdout_bytes (const void *data, size_t len)
{
  if (fwrite (data, 1, len, stdout) != len || fflush (stdout) != 0)
    return fail ("cannot write standard output");
  return EXIT_SUCCESS;
}

static int
cmd_quantize (int argc, char **argv)
{
  g_autoptr (GByteArray) in = NULL;
  g_autofree void *dst = NULL;
  gboolean ref_convert = FALSE;
  char *args[3];
  int n_args = 0, rc;
  RowsSpec spec;

  for (int i = 0; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--ref-convert"))
        ref_convert = TRUE;
      else if (n_args < 3)
        args[n_args++] = argv[i];
      else
        n_args++;
    }
  if (n_args != 3)
    return usage_error ("quantize TYPE N_ROWS N_PER_ROW [--ref-convert] < in.f32 > out.bin");
  if ((rc = parse_rows_spec (args, &spec)) != EXIT_SUCCESS)
    return rc;
  if (ref_convert && spec.type != GGML_TYPE_F16 && spec.type != GGML_TYPE_BF16)
    return usage_error ("--ref-convert is for f16 and bf16 only");
  if (ggml_quantize_requires_imatrix (spec.type))
    return fail ("%s needs an importance matrix", ggml_type_name (spec.type));

  const size_t n = (size_t) (spec.n_rows * spec.n_per_row);
  const size_t out_size = (size_t) spec.n_rows * ggml_row_size (spec.type, spec.n_per_row);
  if ((rc = read_exact_stdin (&in, n * sizeof (float))) != EXIT_SUCCESS)
    return rc;
  dst = g_malloc0 (MAX (out_size, 1));

  if (ref_convert && spec.type == GGML_TYPE_F16)
    ggml_fp32_to_fp16_row ((const float *) in->data, dst, (int64_t) n);
  else if (ref_convert)
    ggml_fp32_to_bf16_row_ref ((const float *) in->data, dst, (int64_t) n);
  else if (spec.n_rows > 0)
    {
      size_t written = ggml_quantize_chunk (spec.type, (const float *) in->data, dst, 0,
                                            spec.n_rows, spec.n_per_row, NULL);
      ggml_quantize_free ();
      if (written != out_size)
        return fail ("ggml_quantize_chunk wrote %zu bytes, expected %zu", written, out_size);
    }
  return write_stdout_bytes (dst, out_size);
}

static int
cmd_dequantize (int argc, char **argv)
{
  g_autoptr (GByteArray) in = NULL;
  g_autofree float *dst = NULL;
  const struct ggml_type_traits *traits;
  RowsSpec spec;
  int rc;

  if (argc != 3)
    return usage_error ("dequantize TYPE N_ROWS N_PER_ROW < in.bin > out.f32");
  if ((rc = parse_rows_spec (argv, &spec)) != EXIT_SUCCESS)
    return rc;
  traits = ggml_get_type_traits (spec.type);
  const size_t row_size = ggml_row_size (spec.type, spec.n_per_row);
  if ((rc = read_exact_stdin (&in, (size_t) spec.n_rows * row_size)) != EXIT_SUCCESS)
    return rc;
  dst = g_new0 (float, MAX (spec.n_rows * spec.n_per_row, 1));
  for (gint64 r = 0; r < spec.n_rows; r++)
    {
      const guint8 *src = in->data + (size_t) r * row_size;
      float *row = dst + r * spec.n_per_row;
      if (spec.type == GGML_TYPE_F32)
        memcpy (row, src, row_size);
      else if (traits->to_float != NULL)
        traits->to_float (src, row, spec.n_per_row);
      else
        return fail ("ggml has no dequantization for %s", ggml_type_name (spec.type));
    }
  return write_stdout_bytes (dst, (size_t) (spec.n_rows * spec.n_per_row) * sizeof (float));
}

/* ---------------------------------------------------------------------- */
/* dump */

#define DUMP_PREVIEW 16

static void
json_array_element (GString *out, enum gguf_type type, const void *data, size_t i)
{
  switch (type)
    {
    case GGUF_TYPE_UINT8: g_string_append_printf (out, "%u", ((const guint8 *) data)[i]); break;
    case GGUF_TYPE_INT8: g_string_append_printf (out, "%d", ((const gint8 *) data)[i]); break;
    case GGUF_TYPE_UINT16: g_string_append_printf (out, "%u", ((const guint16 *) data)[i]); break;
    case GGUF_TYPE_INT16: g_string_append_printf (out, "%d", ((const gint16 *) data)[i]); break;
    case GGUF_TYPE_UINT32: g_string_append_printf (out, "%u", ((const guint32 *) data)[i]); break;
    case GGUF_TYPE_INT32: g_string_append_printf (out, "%d", ((const gint32 *) data)[i]); break;
    case GGUF_TYPE_UINT64:
      g_string_append_printf (out, "%" G_GUINT64_FORMAT, ((const guint64 *) data)[i]);
      break;
    case GGUF_TYPE_INT64:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, ((const gint64 *) data)[i]);
      break;
    /* 17 digits: the float's exact value as a double, so a reader compares
     * it with == */
    case GGUF_TYPE_FLOAT32: json_double (out, ((const float *) data)[i], 17); break;
    case GGUF_TYPE_FLOAT64: json_double (out, ((const double *) data)[i], 17); break;
    case GGUF_TYPE_BOOL:
      g_string_append (out, ((const guint8 *) data)[i] ? "true" : "false");
      break;
    default:
      g_string_append (out, "null");
    }
}

static void
dump_kv_value (GString *out, const struct gguf_context *gguf, int64_t id, gboolean full)
{
  enum gguf_type type = gguf_get_kv_type (gguf, id);

  if (type == GGUF_TYPE_STRING)
    {
      const char *s = gguf_get_val_str (gguf, id);
      json_file_string (out, s, strlen (s));
      return;
    }
  if (type != GGUF_TYPE_ARRAY)
    {
      json_array_element (out, type, gguf_get_val_data (gguf, id), 0);
      return;
    }

  enum gguf_type elem = gguf_get_arr_type (gguf, id);
  size_t n = gguf_get_arr_n (gguf, id);
  size_t shown = full ? n : MIN (n, (size_t) DUMP_PREVIEW);
  g_string_append (out, "{\"type\": ");
  json_cstring (out, gguf_type_name (elem));
  g_string_append_printf (out, ", \"n\": %zu, \"values\": [", n);
  for (size_t i = 0; i < shown; i++)
    {
      if (i > 0)
        g_string_append (out, ", ");
      if (elem == GGUF_TYPE_STRING)
        {
          const char *s = gguf_get_arr_str (gguf, id, i);
          json_file_string (out, s, strlen (s));
        }
      else
        json_array_element (out, elem, gguf_get_arr_data (gguf, id), i);
    }
  g_string_append (out, "]}");
}

static void
dump_tensor (GString *out, const struct gguf_context *gguf, int64_t id)
{
  const char *name = gguf_get_tensor_name (gguf, id);
  const int64_t *ne = gguf_get_tensor_ne (gguf, id);
  enum ggml_type type = gguf_get_tensor_type (gguf, id);
  int n_dims = GGML_MAX_DIMS;

  /* the file's n_dims is not exposed; trailing 1s are dropped as
   * ggml_n_dims does */
  while (n_dims > 1 && ne[n_dims - 1] == 1)
    n_dims--;
  g_string_append (out, "{\"name\": ");
  json_file_string (out, name, strlen (name));
  g_string_append (out, ", \"type\": ");
  json_cstring (out, ggml_type_name (type));
  g_string_append (out, ", \"ne\": [");
  for (int d = 0; d < n_dims; d++)
    g_string_append_printf (out, d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, ne[d]);
  g_string_append_printf (out, "], \"offset\": %zu, \"size\": %zu}",
                          gguf_get_tensor_offset (gguf, id), gguf_get_tensor_size (gguf, id));
}

static int
cmd_dump (int argc, char **argv)
{
  struct gguf_init_params params = { .no_alloc = TRUE, .ctx = NULL };
  g_autoptr (GString) out = g_string_new (NULL);
  struct gguf_context *gguf;
  const char *path = NULL;
  gboolean full = FALSE;

  for (int i = 0; i < argc; i++)
    if (g_str_equal (argv[i], "--full"))
      full = TRUE;
    else if (path == NULL && argv[i][0] != '-')
      path = argv[i];
    else
      return usage_error ("dump MODEL.gguf [--full]");
  if (path == NULL)
    return usage_error ("dump MODEL.gguf [--full]");
  gguf = gguf_init_from_file (path, params);
  if (gguf == NULL)
    return fail ("%s: gguf_init_from_file rejects the file", path);

  g_string_append_printf (out, "{\"version\": %u, \"alignment\": %zu, \"data_offset\": %zu, "
                          "\"n_kv\": %" G_GINT64_FORMAT ", \"n_tensors\": %" G_GINT64_FORMAT
                          ",\n \"kv\": [",
                          gguf_get_version (gguf), gguf_get_alignment (gguf),
                          gguf_get_data_offset (gguf), gguf_get_n_kv (gguf),
                          gguf_get_n_tensors (gguf));
  for (int64_t id = 0; id < gguf_get_n_kv (gguf); id++)
    {
      const char *key = gguf_get_key (gguf, id);
      g_string_append (out, id ? ",\n  {\"key\": " : "\n  {\"key\": ");
      json_file_string (out, key, strlen (key));
      g_string_append (out, ", \"type\": ");
      json_cstring (out, gguf_type_name (gguf_get_kv_type (gguf, id)));
      g_string_append (out, ", \"value\": ");
      dump_kv_value (out, gguf, id, full);
      g_string_append_c (out, '}');
    }
  g_string_append (out, "],\n \"tensors\": [");
  for (int64_t id = 0; id < gguf_get_n_tensors (gguf); id++)
    {
      g_string_append (out, id ? ",\n  " : "\n  ");
      dump_tensor (out, gguf, id);
    }
  g_string_append (out, "]}\n");
  gguf_free (gguf);
  write_stdout (out);
  return EXIT_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* model-quantize */

static int
cmd_model_quantize (int argc, char **argv)
{
  struct llama_model_quantize_params params;
  g_autoptr (GString) out = g_string_new (NULL);
  enum llama_ftype ftype;
  uint32_t rc;

  if (argc != 3)
    return usage_error ("model-quantize IN.gguf OUT.gguf FTYPE (Q4_K_M, Q8_0, F16, ... or a number)");
  if (!ftype_from_name (argv[2], &ftype))
    return usage_error ("'%s' is not a llama ftype name", argv[2]);
  load_backends ();
  /* the defaults of this llama.cpp version, with only the file type set
   * (the struct layout changes between versions: assign by name only) */
  params = llama_model_quantize_default_params ();
  params.ftype = ftype;
  rc = llama_model_quantize (argv[0], argv[1], &params);
  if (rc != 0)
    return fail ("llama_model_quantize %s -> %s (%s) returned %u", argv[0], argv[1], argv[2], rc);
  g_string_append_printf (out, "{\"ftype\": %d, \"out\": ", (int) ftype);
  json_cstring (out, argv[1]);
  g_string_append (out, "}\n");
  write_stdout (out);
  return EXIT_SUCCESS;
}

/* ---------------------------------------------------------------------- */

static const char usage_text[] =
  "usage: smelt-llama-harness [--verbose] COMMAND ARGS\n"
  "  load MODEL.gguf\n"
  "  logits MODEL.gguf --tokens 1,2,3 [--lora A.gguf [--lora-scale S]]... [--out FILE] [--threads N]\n"
  "  tokenize MODEL.gguf < texts.json\n"
  "  quantize TYPE N_ROWS N_PER_ROW [--ref-convert] < in.f32 > out.bin\n"
  "  dequantize TYPE N_ROWS N_PER_ROW < in.bin > out.f32\n"
  "  dump MODEL.gguf [--full]\n"
  "  model-quantize IN.gguf OUT.gguf FTYPE\n"
  "exit status: 0 success, 1 failure, 2 usage error\n";

typedef struct
{
  const char *name;
  int (*run) (int argc, char **argv);
  gboolean uses_llama;
} Command;

static const Command commands[] = {
  { "load", cmd_load, TRUE },
  { "logits", cmd_logits, TRUE },
  { "tokenize", cmd_tokenize, TRUE },
  { "quantize", cmd_quantize, FALSE },
  { "dequantize", cmd_dequantize, FALSE },
  { "dump", cmd_dump, FALSE },
  { "model-quantize", cmd_model_quantize, TRUE },
};

int
main (int argc, char **argv)
{
  int first = 1, rc;

  while (first < argc && g_str_equal (argv[first], "--verbose"))
    {
      verbose = TRUE;
      first++;
    }
  if (first >= argc)
    {
      fputs (usage_text, stderr);
      return EXIT_USAGE;
    }

  log_tail = g_string_new (NULL);
  /* also routes ggml's and gguf's messages */
  llama_log_set (log_cb, NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      if (!g_str_equal (argv[first], commands[i].name))
        continue;
      if (commands[i].uses_llama)
        llama_backend_init ();
      rc = commands[i].run (argc - first - 1, argv + first + 1);
      if (commands[i].uses_llama)
        llama_backend_free ();
      finish_logging ();
      return rc;
    }
  finish_logging ();
  fputs (usage_text, stderr);
  return EXIT_USAGE;
}
