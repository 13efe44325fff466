/*-------------------------------------------------------------------------
 *
 * schema_registry.c
 *	  Fetching Avro writer schemas from a Confluent Schema Registry.
 *
 * See schema_registry.h for what is fetched and who may fetch from where.
 * The URL is parsed by libcurl's own URL parser (the one that will make the
 * request), so the host we check is the host it connects to.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/varlena.h"

#include "schema_registry.h"

/* Hosts ("host" or "host:port") that sources of non-superusers may name. */
static char *registry_hosts = NULL;

/* Milliseconds for the whole request (connecting included). */
static int	registry_timeout = 5000;

static bool curl_initialized = false;

void
registry_define_settings(void)
{
	DefineCustomStringVariable("streamflink.schema_registry_hosts",
							   "Schema registry hosts that sources of roles other than superusers may use.",
							   "A comma-separated list of host or host:port, matched against the host "
							   "of a source's schema_registry URL; empty: only superusers' sources may "
							   "name a schema registry.",
							   &registry_hosts, "",
							   PGC_SUSET, GUC_LIST_INPUT, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.schema_registry_timeout",
							"Time limit of one request to a schema registry.",
							"Connecting included; a request that takes longer is a registry error.",
							&registry_timeout, 5000, 100, 60000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
}

static void
registry_curl_init(void)
{
	if (!curl_initialized)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "could not initialize libcurl");
		curl_initialized = true;
	}
}

/* Is host:port in streamflink.schema_registry_hosts? */
static bool
host_allowed(const char *host, const char *port)
{
	char	   *copy = pstrdup(registry_hosts ? registry_hosts : "");
	List	   *allowed;
	ListCell   *lc;
	char	   *hostport = psprintf("%s:%s", host, port);

	if (!SplitGUCList(copy, ',', &allowed))
		return false;
	foreach(lc, allowed)
	{
		char	   *a = (char *) lfirst(lc);

		if (pg_strcasecmp(a, host) == 0 || pg_strcasecmp(a, hostport) == 0)
			return true;
	}
	return false;
}

char *
registry_url_refused(const char *url, Oid owner)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	char	   *reason = NULL;

	if (url == NULL || url[0] == '\0')
		return pstrdup("the schema registry URL is empty");
	registry_curl_init();
	u = curl_url();
	if (u == NULL)
		return pstrdup("out of memory parsing the schema registry URL");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		reason = psprintf("invalid schema registry URL \"%s\"", url);
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		reason = psprintf("schema registry URL \"%s\" is not http or https", url);
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
		reason = psprintf("schema registry URL \"%s\" names no host", url);
	else if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
			 curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK)
		reason = psprintf("schema registry URL \"%s\" has a query or fragment", url);
	else if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		reason = psprintf("invalid port in schema registry URL \"%s\"", url);
	else if (!superuser_arg(owner) && !host_allowed(host, port))
		reason = psprintf("schema registry host \"%s:%s\" is not in streamflink.schema_registry_hosts",
						  host, port);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(u);
	return reason;
}

typedef struct Response
{
	StringInfoData body;
	bool		too_large;
} Response;

/* Runs in curl_easy_perform, on our thread: no ereport (no longjmp). */
static size_t
collect_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Response   *r = (Response *) userdata;
	size_t		n = size * nmemb;

	if (r->body.len + n > REGISTRY_MAX_RESPONSE)
	{
		r->too_large = true;
		return 0;				/* aborts the transfer */
	}
	appendBinaryStringInfo(&r->body, ptr, (int) n);
	return n;
}

/*
 * A cancel or termination request ends the transfer.  Only those:
 * InterruptPending alone may stand for harmless work (a sinval catch-up, a
 * barrier) that CHECK_FOR_INTERRUPTS just does.
 */
static int
check_interrupts(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/* The "schema" member of a registry's answer, or NULL with *error. */
static char *
schema_from_response(const char *body, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *jb = NULL;
	JsonbValue	v;

	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		jb = NULL;
	}
	PG_END_TRY();
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
	{
		*error = pstrdup("the schema registry's answer is not a JSON object");
		return NULL;
	}
	if (getKeyJsonValueFromContainer(&jb->root, "schemaType", 10, &v) != NULL &&
		!(v.type == jbvString && v.val.string.len == 4 &&
		  pg_strncasecmp(v.val.string.val, "AVRO", 4) == 0))
	{
		*error = pstrdup("the schema registry's schema is not an Avro schema");
		return NULL;
	}
	if (getKeyJsonValueFromContainer(&jb->root, "schema", 6, &v) == NULL ||
		v.type != jbvString)
	{
		*error = pstrdup("the schema registry's answer has no \"schema\" string");
		return NULL;
	}
	return pnstrdup(v.val.string.val, v.val.string.len);
}

char *
registry_fetch_schema(const char *url, Oid owner, int32 id, bool *not_found,
					  bool *unavailable, char **error)
{
	CURL	   *curl;
	CURLcode	rc;
	long		status = 0;
	Response	r;
	char		curl_error[CURL_ERROR_SIZE];
	char	   *request;
	char	   *schema = NULL;
	size_t		ulen;

	*not_found = false;
	*unavailable = true;
	*error = registry_url_refused(url, owner);
	if (*error)
		return NULL;

	/* the base URL may end with a slash, or not */
	ulen = strlen(url);
	while (ulen > 0 && url[ulen - 1] == '/')
		ulen--;
	request = psprintf("%.*s/schemas/ids/%d", (int) ulen, url, id);

	curl = curl_easy_init();
	if (curl == NULL)
	{
		*error = pstrdup("could not create a schema registry request");
		return NULL;
	}
	initStringInfo(&r.body);
	r.too_large = false;
	curl_error[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, request);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* a redirect could lead anywhere the host check did not look */
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) registry_timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) registry_timeout);
	curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) REGISTRY_MAX_RESPONSE);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_interrupts);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "streamflink");
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);

	CHECK_FOR_INTERRUPTS();

	*unavailable = (rc != CURLE_OK && !r.too_large && rc != CURLE_FILESIZE_EXCEEDED) ||
		(rc == CURLE_OK && status != 200 && status != 404);
	if (r.too_large || rc == CURLE_FILESIZE_EXCEEDED)
		*error = psprintf("schema registry error: the answer for schema id %d exceeds %d bytes",
						  id, REGISTRY_MAX_RESPONSE);
	else if (rc != CURLE_OK)
		*error = psprintf("schema registry error: %s",
						  curl_error[0] ? curl_error : curl_easy_strerror(rc));
	else if (status == 404)
	{
		*not_found = true;
		*error = psprintf("unknown schema id %d (the schema registry answered 404)", id);
	}
	else if (status != 200)
		*error = psprintf("schema registry error: HTTP status %ld for schema id %d", status, id);
	else if (memchr(r.body.data, '\0', r.body.len) != NULL)
		*error = pstrdup("the schema registry's answer is not a JSON object");
	else
		schema = schema_from_response(r.body.data, error);
	pfree(r.body.data);
	pfree(request);
	return schema;
}
