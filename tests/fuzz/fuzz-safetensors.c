/* fuzz-safetensors.c: the safetensors reader on arbitrary bytes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built as a libFuzzer target with -Dfuzzing=true (clang), and always as
 * a plain program that runs the input files given on its command line, so
 * the corpus is replayed by the test suite under the sanitizers.
 */
#include <glib/gstdio.h>
#include <unistd.h>

#include "smelt-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *path = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  int fd = g_file_open_tmp ("smelt-fuzz-XXXXXX.safetensors", &path, NULL);

  if (fd < 0)
    return 0;
  if (write (fd, data, size) != (gssize) size)
    {
      close (fd);
      g_unlink (path);
      return 0;
    }
  close (fd);

  file = smelt_safetensors_file_new (path, &error);
  if (file != NULL)
    {
      /* a file that validates must be readable end to end */
      for (guint i = 0; i < smelt_safetensors_file_get_n_tensors (file); i++)
        {
          SmeltTensor *t = smelt_safetensors_file_get_tensor (file, i);
          g_autoptr(GBytes) bytes = smelt_tensor_get_bytes (t);
          SmeltDType d = smelt_tensor_get_dtype (t);

          g_assert_cmpuint (g_bytes_get_size (bytes), ==, smelt_tensor_get_n_bytes (t));
          if ((d == SMELT_DTYPE_F32 || d == SMELT_DTYPE_F16 || d == SMELT_DTYPE_BF16) &&
              smelt_tensor_get_n_elements (t) < (1 << 20))
            {
              g_autofree float *rows = g_new (float, MAX (smelt_tensor_get_n_elements (t), 1));
              g_assert_true (smelt_tensor_read_rows (t, 0, smelt_tensor_get_n_rows (t),
                                                     SMELT_DTYPE_F32, rows, NULL));
            }
        }
    }
  else
    g_assert_nonnull (error);
  g_unlink (path);
  return 0;
}

#include "fuzz-main.h"
