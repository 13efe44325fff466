# streamflink: PGXS build.
MODULE_big = streamflink
OBJS = \
	src/streamflink.o \
	src/catalog.o \
	src/run_as.o \
	src/resolve.o \
	src/decode.o \
	src/avro_decode.o \
	src/schema_registry.o \
	src/kafka_source.o \
	src/start_position.o \
	src/state.o \
	src/state_tuning.o \
	src/state_metrics.o \
	src/keyed_state.o \
	src/timer_service.o \
	src/group_key.o \
	src/fragment.o \
	src/aggregate.o \
	src/window.o \
	src/sql_pipeline.o \
	src/filter_project.o \
	src/match_recognize.o \
	src/operator.o \
	src/operator_factory.o \
	src/pattern.o \
	src/cep.o \
	src/pg_sink.o \
	src/kafka_sink.o \
	src/side_output.o \
	src/checkpoint.o \
	src/savepoint.o \
	src/state_rescale.o \
	src/rescale.o \
	src/worker.o \
	src/parallel_task.o \
	src/exchange.o \
	src/local_agg.o \
	src/hot_keys.o \
	src/task.o \
	src/watermark.o \
	src/replay.o \
	src/harness.o \
	src/collect_sink.o \
	src/run_operator.o \
	src/launcher.o \
	src/slot.o \
	src/poison.o \
	src/status.o \
	src/live.o \
	src/producer.o \
	src/tenancy.o \
	src/ddl_guard.o

EXTENSION = streamflink
DATA = sql/streamflink--0.1.sql sql/streamflink--0.1--0.2.sql
PGFILEDESC = "streamflink - stream processing inside PostgreSQL"

SHLIB_LINK = -lrdkafka -lrocksdb -lpthread -licui18n -licuuc -lavro -lcurl
PG_CPPFLAGS = -I$(srcdir)/src

# pg_regress (sql/, expected/): tests run against a server the test driver started with
# shared_preload_libraries (see test/run_tests.sh), hence --use-existing.
REGRESS = setup source decode pipeline run run_csv poison cep cep_bounds cep_aggregates replay cep_replay hardening tenancy_owner quota_race lifecycle_race cep_tenant_bounds stop_busy shared_owner live_rls cross_owner drop_database tenancy run_operator run_operator_cep cep_flink state_tuning savepoint sql_pipeline source_start source_metadata source_partitions avro kafka_sink parallel rescale rescale_checkpoint checkpoint_retention local_agg sink_insert timers state_batch_read ddl_guard checkpoint_format
REGRESS_OPTS = --use-existing --dbname=streamflink_regress

EXTRA_CLEAN = test/mock_broker test/produce test/consume_bench

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Test programs: the mock Kafka broker, the producer, the consume baseline.
TEST_PROGRAMS = test/mock_broker test/produce test/consume_bench

test/%: test/%.c
	$(CC) -O2 -Wall -o $@ $< -lrdkafka -lpthread

test-programs: $(TEST_PROGRAMS)
.PHONY: test-programs

# The regression tests run against the server with the extension preloaded
# (test/misconfigured.sql runs separately, against a server without it).
print-regress:
	@echo $(REGRESS)
.PHONY: print-regress
