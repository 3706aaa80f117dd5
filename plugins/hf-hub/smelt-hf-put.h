/* smelt-hf-put.h: PUT of a file slice to object storage, in large writes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "smelt-hf-client.h"

G_BEGIN_DECLS

/* One thread's connection to storage, kept alive between PUTs */
typedef struct _SmeltHfPut SmeltHfPut;

SmeltHfPut   *smelt_hf_put_new  (guint          timeout);
void          smelt_hf_put_free (SmeltHfPut    *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfPut, smelt_hf_put_free)

/* One attempt: PUT [offset, offset + length) of @local to @url (with the
 * extra headers, never a token). @sent gets the body bytes written. */
SmeltHfReply *smelt_hf_put_once (SmeltHfPut         *self,
                                 const char         *url,
                                 const SmeltHfBody  *body,
                                 guint64            *sent,
                                 GCancellable       *cancellable,
                                 GError            **error);

G_END_DECLS
