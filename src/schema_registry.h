/*-------------------------------------------------------------------------
 *
 * schema_registry.h
 *	  Fetching Avro writer schemas from a Confluent Schema Registry.
 *
 * One call, GET {registry}/schemas/ids/{id} of the Confluent Schema
 * Registry REST API (v1, as served by Confluent Platform 5.x to 7.x and by
 * compatible registries), made with libcurl on the calling thread.  The
 * registry URL is a string a tenant wrote: only http and https are spoken
 * (CURLOPT_PROTOCOLS_STR; redirects are not followed), the connection and
 * the whole request are bounded by streamflink.schema_registry_timeout, the
 * answer by REGISTRY_MAX_RESPONSE bytes, and for a source whose owner is not
 * a superuser the host must be listed in streamflink.schema_registry_hosts
 * (superuser-only; empty: only superusers' sources may name a registry).
 *
 * Memory: results are palloc'd in CurrentMemoryContext; libcurl's own
 * memory is released before returning, also on error.  Threads and
 * signals: libcurl runs with CURLOPT_NOSIGNAL (no SIGALRM for DNS
 * timeouts), on the caller's thread only; a pending query cancel or
 * termination aborts the transfer and is then served by the caller's
 * CHECK_FOR_INTERRUPTS.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SCHEMA_REGISTRY_H
#define STREAMFLINK_SCHEMA_REGISTRY_H

/* Answers larger than this are refused (a schema is a few kB). */
#define REGISTRY_MAX_RESPONSE (1024 * 1024)

/* streamflink.schema_registry_hosts, streamflink.schema_registry_timeout */
extern void registry_define_settings(void);

/*
 * NULL if 'url' is a registry URL a source of 'owner' may use; otherwise
 * the reason (palloc'd).  Never raises.
 */
extern char *registry_url_refused(const char *url, Oid owner);

/*
 * The writer schema (JSON text, palloc'd) registered under 'id', or NULL
 * with *error set (palloc'd): URL refused, connection or HTTP error,
 * unknown id (HTTP 404, *not_found set), an answer that is not a
 * registry's, a schema type other than Avro.  *unavailable is set when the
 * registry could not answer at all (URL refused, connection, timeout, an
 * HTTP status other than 200 and 404): no use asking it for other ids
 * right away.  Raises only for interrupts and out-of-memory.
 */
extern char *registry_fetch_schema(const char *url, Oid owner, int32 id,
								   bool *not_found, bool *unavailable,
								   char **error);

#endif							/* STREAMFLINK_SCHEMA_REGISTRY_H */
