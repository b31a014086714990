/*
 * A small lab-management tool on the allocate C API: it builds an inventory, installs a
 * scoring callback that prefers one rack, allocates, lets leases expire by advancing time,
 * and prints what happened.
 */
#include <allocate.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t T0_MS = 1700000000000ULL;

static void check(enum allocate_result rc, const char *what) {
  if (rc == ALLOCATE_OK) {
    return;
  }
  char message[512];
  allocate_last_error_message(message, sizeof message, NULL);
  fprintf(stderr, "%s failed (%d): %s\n", what, (int)rc, message);
  exit(1);
}

/* Prefer resources labelled "rack-b"; no opinion otherwise. */
static bool prefer_rack(void *userdata, const struct allocate_request_view *request,
                        const struct allocate_candidate *candidate, int64_t *score_out) {
  const char *rack = userdata;
  (void)request;
  for (size_t i = 0; i < candidate->labels_len; i++) {
    if (strcmp(candidate->labels[i], rack) == 0) {
      *score_out = 1;
      return true;
    }
  }
  return false;
}

static void print_outputs(struct allocate_engine *engine) {
  struct allocate_output out;
  char id[37];
  while (allocate_engine_poll_output(engine, &out) == ALLOCATE_OK) {
    check(allocate_uuid_format(&out.allocation_id, id, sizeof id), "allocate_uuid_format");
    switch (out.kind) {
    case ALLOCATE_OUTPUT_READY:
      printf("ready    %s on %s until %llu\n", id, out.host, (unsigned long long)out.expires);
      break;
    case ALLOCATE_OUTPUT_QUEUED:
      printf("queued   %s at position %u (%llu matching)\n", id, out.position,
             (unsigned long long)out.matching_resources);
      break;
    case ALLOCATE_OUTPUT_EXPIRED:
      printf("expired  %s\n", id);
      break;
    case ALLOCATE_OUTPUT_TIMED_OUT:
      printf("timeout  %s\n", id);
      break;
    default:
      printf("output   %d for %s\n", (int)out.kind, id);
      break;
    }
  }
}

int main(void) {
  struct allocate_engine *engine = NULL;
  struct allocate_config config;
  check(allocate_config_default(&config), "allocate_config_default");
  config.lease_secs_default = 600;
  check(allocate_engine_new(&config, 1, &engine), "allocate_engine_new");

  static const char *resources =
      "[{\"labels\": [\"nvidia\", \"rack-a\"], \"cpu_count\": 16, \"memory_gb\": 64,"
      "  \"gpu\": [{\"label\": \"NVIDIA GeForce RTX 2080\", \"memory_gb\": 8}], \"type\": \"server-onsite\","
      "  \"connection\": {\"host\": \"10.0.0.1\", \"username\": \"lab\", \"password\": \"pw-a\"}},"
      " {\"labels\": [\"nvidia\", \"rack-b\"], \"cpu_count\": 16, \"memory_gb\": 64,"
      "  \"gpu\": [{\"label\": \"NVIDIA GeForce RTX 2080\", \"memory_gb\": 8}], \"type\": \"server-onsite\","
      "  \"connection\": {\"host\": \"10.0.0.2\", \"username\": \"lab\", \"password\": \"pw-b\"}}]";
  struct allocate_uuid agent;
  check(allocate_uuid_parse("d4863713-1388-4297-a479-a582b306f5cb", &agent), "allocate_uuid_parse");
  char *ids = NULL;
  check(allocate_engine_register(engine, T0_MS, &agent, resources, &ids), "allocate_engine_register");
  printf("registered %s\n", ids);
  allocate_string_free(ids);

  static char rack[] = "rack-b";
  check(allocate_engine_set_policy(engine, NULL, prefer_rack, rack), "allocate_engine_set_policy");

  const char *tags[] = {"nvidia"};
  struct allocate_request request = {0};
  request.username = "ci-runner-7";
  request.tags = tags;
  request.tags_len = 1;
  request.allocation_timeout_seconds = 3600;
  request.gpu_count = 1;
  request.gpu_label = "rtx 2080";
  struct allocate_uuid first, second, third;
  /* Two short leases; the third request waits for one of them and then takes the default lease. */
  request.expires = T0_MS / 1000 + 300;
  check(allocate_engine_request(engine, T0_MS, &request, &first), "allocate_engine_request");
  check(allocate_engine_request(engine, T0_MS, &request, &second), "allocate_engine_request");
  request.expires = 0;
  check(allocate_engine_request(engine, T0_MS, &request, &third), "allocate_engine_request");
  print_outputs(engine);

  uint64_t deadline = 0;
  while (allocate_engine_poll_timeout(engine, &deadline) == ALLOCATE_OK && deadline <= T0_MS + 2000000) {
    printf("advancing to +%llus\n", (unsigned long long)((deadline - T0_MS) / 1000));
    check(allocate_engine_handle_timeout(engine, deadline), "allocate_engine_handle_timeout");
    print_outputs(engine);
  }
  allocate_engine_free(engine);
  return 0;
}
