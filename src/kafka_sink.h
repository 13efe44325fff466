/*-------------------------------------------------------------------------
 *
 * kafka_sink.h
 *	  The Kafka sink: result rows as messages in Kafka transactions tied to
 *	  the pipeline's checkpoints, exactly once.
 *
 * A third implementation of the sink interface (sink.h), chosen when the
 * pipeline names a sink_topic.  Each worker -- each task of a parallel
 * pipeline, 'worker' being the task number -- has one transactional
 * producer (transactional.id "streamflink-<system id>-<db>-<pipeline>-<worker>"),
 * its own transactions, txn records and outbox rows (column worker), and
 * settles only those at its start, after its epoch transaction's recovery
 * has applied the pipeline's decision: the tasks' Kafka commits are
 * independent of each other.
 * The rows of epoch n go into one Kafka transaction and, in the same epoch,
 * into the pipeline's outbox table (the table its `sink` names), which is
 * written inside the worker's epoch transaction and so becomes durable only
 * with checkpoint n.  prepare flushes the messages (delivered, not yet
 * committed) and records the transaction (streamflink.kafka_sink_txn) in
 * the epoch transaction; commit, after the checkpoint's decision, writes a
 * marker message naming the checkpoint into the marker topic
 * (<sink_topic>.markers), commits the Kafka transaction, and then records
 * the commit and deletes the epoch's outbox rows.  recover, at start,
 * fences the previous producer (init_transactions aborts its open
 * transaction) and settles every recorded but unconfirmed transaction: if
 * its marker is readable with isolation.level=read_committed it committed
 * and is only recorded; otherwise the outbox rows are sent again in a new
 * transaction.  See README.md, "Kafka sink", for each crash window.
 *
 * Every message carries the headers pipeline, worker, checkpoint, run (the
 * producer's incarnation: one per worker start) and sequence (within the
 * checkpoint), and output ("result" or "timed_out"); the key is the
 * row's identity (window: key columns and window_start; pattern: key
 * columns) as a JSON object, or as text when it is a single column; the
 * value is the row as JSON, or null (a tombstone) for a retraction.
 *
 * Memory: the sink lives in the context current at creation (the worker's
 * TopMemoryContext); each write uses a scratch context.  Threads:
 * librdkafka's own, created with every signal blocked; its delivery
 * reports and log lines are handled on the worker's thread, in
 * rd_kafka_poll/flush and from the log queue; the producer is destroyed in
 * a before_shmem_exit callback.  Callers of open_output, write and flush
 * are connected to SPI with an active snapshot, as for the table sink;
 * the outbox is written as the pipeline's owner (run_as.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_KAFKA_SINK_H
#define STREAMFLINK_KAFKA_SINK_H

#include "catalog.h"
#include "sink.h"

/* A Kafka sink for def (def->sink_topic set) on worker (task) 'worker'. */
extern Sink *kafka_sink_create(Oid dboid, PipelineDef *def, int worker);

/*
 * Check a Kafka sink's settings for a pipeline of 'owner': brokers, topic,
 * format, producer options (the source allow-list, kafka_source.h, plus
 * producer settings safe for tenants; the producer's own settings refused
 * for everyone) and transaction.timeout.ms against the checkpoint interval
 * (microseconds).  ereports ERROR with a hint.
 */
extern void kafka_sink_check(const char *brokers, const char *topic,
							 const char *format, List *options,
							 int64 checkpoint_interval, bool trusted);

#endif							/* STREAMFLINK_KAFKA_SINK_H */
