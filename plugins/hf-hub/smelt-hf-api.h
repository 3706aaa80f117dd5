/* smelt-hf-api.h: the Hub's upload protocol, one call at a time
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "smelt-hf-client.h"
#include "smelt-hf-stage.h"

G_BEGIN_DECLS

/* The repo being pushed to, and who pushes */
typedef struct {
  SmeltHfClient *client;
  char          *repo_id;      /* owner/name */
  char          *repo_type;    /* "model" or "dataset" */
  char          *revision;     /* branch, or refs/pr/N */
  gboolean       create_pr;
  char          *api_base;     /* {endpoint}/api/{type}s/{owner}/{name} */
  char          *web_url;      /* {endpoint}/[datasets/]{owner}/{name} */
  char          *lfs_batch;    /* {endpoint}/[datasets/]{owner}/{name}.git/info/lfs/objects/batch */
  char          *rev_segment;  /* the revision, percent-encoded as one path segment */
  char          *account;      /* whoami's name, once known */
  GPtrArray     *orgs;         /* char*, the account's organizations */
  char          *token_role;   /* read, write, fineGrained, ... */
} SmeltHfRepo;

SmeltHfRepo *smelt_hf_repo_new  (SmeltHfClient *client,
                                 const char    *repo_id,
                                 const char    *repo_type,
                                 const char    *revision,
                                 gboolean       create_pr);
void         smelt_hf_repo_free (SmeltHfRepo   *repo);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfRepo, smelt_hf_repo_free)

/* A file of the commit */
typedef struct {
  SmeltHfStaged *staged;
  gboolean       lfs;          /* preupload said "lfs" */
  gboolean       skip;         /* ignored by the repo, or unchanged */
  char          *skip_reason;
  /* the LFS batch's answer */
  gboolean       stored;       /* the Hub already has the object */
  char          *upload_href;  /* single PUT, or the multipart completion URL */
  GPtrArray     *upload_headers; /* alternating name, value (basic transfer) */
  guint64        chunk_size;   /* 0: one PUT */
  GPtrArray     *part_hrefs;   /* char*, part i+1 */
  GPtrArray     *etags;        /* char*, filled by the transfer */
  char          *verify_href;
  GPtrArray     *verify_headers;
  gboolean       expired;      /* storage answered 403: ask the batch again */
} SmeltHfFile;

SmeltHfFile *smelt_hf_file_new  (SmeltHfStaged *staged);
void         smelt_hf_file_free (SmeltHfFile   *file);

/* What the repo holds at the revision */
typedef struct {
  char       *sha;           /* head commit */
  gboolean    is_private;
  gboolean    has_private;
  GHashTable *files;         /* path -> size string or "" */
} SmeltHfRevision;

void         smelt_hf_revision_free (SmeltHfRevision *rev);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfRevision, smelt_hf_revision_free)

/* The outcome of the commit */
typedef struct {
  char *oid;
  char *url;
  char *pr_url;
} SmeltHfCommitResult;

void         smelt_hf_commit_result_clear (SmeltHfCommitResult *result);

GError      *smelt_hf_repo_http_error (SmeltHfRepo  *repo,
                                       SmeltHfReply *reply,
                                       const char   *step);

gboolean     smelt_hf_whoami          (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_check_namespace (SmeltHfRepo   *repo,
                                       GError       **error);
gboolean     smelt_hf_create_repo     (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       gboolean       set_private,
                                       gboolean       is_private,
                                       gboolean      *created,
                                       GCancellable  *cancellable,
                                       GError       **error);
SmeltHfRevision *smelt_hf_get_revision (SmeltHfRepo  *repo,
                                       SoupSession   *session,
                                       GCancellable  *cancellable,
                                       GError       **error);
GBytes      *smelt_hf_download        (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       const char    *path,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_validate_yaml   (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       GBytes        *readme,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_preupload       (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       GPtrArray     *files,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_lfs_batch       (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       GPtrArray     *files,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_complete_multipart (SmeltHfRepo *repo,
                                       SoupSession   *session,
                                       SmeltHfFile   *file,
                                       GCancellable  *cancellable,
                                       GError       **error);
gboolean     smelt_hf_verify          (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       SmeltHfFile   *file,
                                       GCancellable  *cancellable,
                                       GError       **error);
GBytes      *smelt_hf_commit_payload  (SmeltHfRepo   *repo,
                                       GPtrArray     *files,
                                       GPtrArray     *deleted,
                                       const char    *summary,
                                       const char    *description,
                                       const char    *parent,
                                       GError       **error);
gboolean     smelt_hf_commit          (SmeltHfRepo   *repo,
                                       SoupSession   *session,
                                       GBytes        *payload,
                                       const char    *summary,
                                       const char    *parent,
                                       SmeltHfCommitResult *result,
                                       GCancellable  *cancellable,
                                       GError       **error);

G_END_DECLS
