/* Tests of every function and error code of the allocate C API. */
#include <allocate.h>

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (cond) {                                                                       \
      passed++;                                                                       \
    } else {                                                                          \
      failed++;                                                                       \
      char msg_[256] = "";                                                            \
      allocate_last_error_message(msg_, sizeof msg_, NULL);                           \
      fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond, msg_); \
    }                                                                                 \
  } while (0)

static const uint64_t T0 = 1700000000000ULL;
static const char *STATIC_RES =
    "[{\"labels\": [\"nvidia\"], \"cpu_count\": 8, \"memory_gb\": 32, \"gpu\": [{\"label\": \"RTX 2080\", \"memory_gb\": 8}],"
    "  \"type\": \"VM\", \"connection\": {\"host\": \"h1\", \"username\": \"u\", \"password\": \"p1\"}},"
    " {\"labels\": [\"nvidia\"], \"cpu_count\": 64, \"memory_gb\": 256, \"gpu\": [{\"label\": \"RTX 2080\", \"memory_gb\": 8}],"
    "  \"type\": \"VM\", \"connection\": {\"host\": \"h2\", \"username\": \"u\", \"password\": \"p2\"}}]";
static const char *AGENT = "d4863713-1388-4297-a479-a582b306f5cb";

static struct allocate_engine *new_engine(void) {
  struct allocate_engine *e = NULL;
  EXPECT(allocate_engine_new(NULL, 7, &e) == ALLOCATE_OK && e != NULL);
  return e;
}

static int drain(struct allocate_engine *e, enum allocate_output_kind kind, struct allocate_output *found) {
  struct allocate_output out;
  int n = 0;
  while (allocate_engine_poll_output(e, &out) == ALLOCATE_OK) {
    if (out.kind == kind) {
      n++;
      if (found) {
        *found = out;
      }
    }
  }
  return n;
}

static void test_errors_and_helpers(void) {
  char buf[64];
  size_t len = 0;
  struct allocate_uuid id;
  EXPECT(allocate_uuid_parse(NULL, &id) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_last_error_message(buf, sizeof buf, &len) == ALLOCATE_OK);
  EXPECT(strcmp(buf, "text must not be null") == 0 && len == strlen(buf));
  EXPECT(allocate_last_error_message(buf, 3, &len) == ALLOCATE_BUFFER_TOO_SMALL && len == 21);
  EXPECT(allocate_last_error_message(NULL, 0, NULL) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_uuid_parse("\xff\xfe", &id) == ALLOCATE_INVALID_UTF8);
  EXPECT(allocate_uuid_parse("not-a-uuid", &id) == ALLOCATE_INVALID_REQUEST);
  EXPECT(allocate_uuid_parse(AGENT, &id) == ALLOCATE_OK);
  EXPECT(allocate_last_error_message(buf, sizeof buf, &len) == ALLOCATE_OK && len == 0);
  char text[37];
  EXPECT(allocate_uuid_format(&id, text, 10) == ALLOCATE_BUFFER_TOO_SMALL);
  EXPECT(allocate_uuid_format(&id, text, sizeof text) == ALLOCATE_OK && strcmp(text, AGENT) == 0);
  EXPECT(allocate_uuid_format(NULL, text, sizeof text) == ALLOCATE_NULL_PARAMETER);
  EXPECT(strcmp(allocate_version(), ALLOCATE_VERSION_STRING) == 0); /* header and library agree */
  EXPECT(ALLOCATE_VERSION_MAJOR >= 0 && ALLOCATE_VERSION_MINOR >= 0 && ALLOCATE_VERSION_PATCH >= 0);
  struct allocate_config config;
  EXPECT(allocate_config_default(&config) == ALLOCATE_OK && config.lease_secs_default == 3600);
  EXPECT(allocate_config_default(NULL) == ALLOCATE_NULL_PARAMETER);
  struct allocate_engine *e = NULL;
  EXPECT(allocate_engine_new(&config, 1, NULL) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_engine_handle_timeout(NULL, T0) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_engine_new(&config, 1, &e) == ALLOCATE_OK);
  allocate_engine_free(e);

  /* Freeing null is a no-op that leaves the last error alone. */
  EXPECT(allocate_uuid_parse("nope", &id) == ALLOCATE_INVALID_REQUEST);
  allocate_engine_free(NULL);
  allocate_string_free(NULL);
  EXPECT(allocate_last_error_message(buf, sizeof buf, &len) == ALLOCATE_OK && len > 0);
  EXPECT(strstr(buf, "nope") != NULL);

  /* A null handle is a null parameter, never a crash, in every kind of call on it. */
  char *json = NULL;
  struct allocate_output out;
  EXPECT(allocate_engine_snapshot_json(NULL, &json) == ALLOCATE_NULL_PARAMETER && json == NULL);
  EXPECT(allocate_engine_poll_output(NULL, &out) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_engine_inventory_json(NULL, &json) == ALLOCATE_NULL_PARAMETER && json == NULL);
  EXPECT(allocate_engine_set_policy(NULL, NULL, NULL, NULL) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_last_error_message(buf, sizeof buf, NULL) == ALLOCATE_OK);
  EXPECT(strcmp(buf, "engine must not be null") == 0);
}

static void test_lifecycle_static(void) {
  struct allocate_engine *e = new_engine();
  struct allocate_uuid agent, first, second, missing;
  allocate_uuid_parse(AGENT, &agent);
  char *ids = NULL;
  EXPECT(allocate_engine_register(e, T0, &agent, "{]", &ids) == ALLOCATE_INVALID_REQUEST);
  EXPECT(allocate_engine_register(e, T0, &agent, "[{\"cpu_count\": 1.5, \"memory_gb\": 1}]", NULL) ==
         ALLOCATE_INVALID_REQUEST);
  char msg[256];
  allocate_last_error_message(msg, sizeof msg, NULL);
  EXPECT(strstr(msg, "resources[0].cpu_count") != NULL);
  EXPECT(allocate_engine_register(e, T0, &agent, STATIC_RES, &ids) == ALLOCATE_OK);
  EXPECT(ids != NULL && ids[0] == '[');
  allocate_string_free(ids);

  const char *tags[] = {"nvidia"};
  struct allocate_request req = {0};
  req.tags = tags;
  req.tags_len = 1;
  EXPECT(allocate_engine_request(e, T0, &req, &first) == ALLOCATE_NULL_PARAMETER); /* no username */
  req.username = "ci";
  req.expires = 1; /* in the past */
  EXPECT(allocate_engine_request(e, T0, &req, &first) == ALLOCATE_INVALID_REQUEST);
  req.expires = 0;
  EXPECT(allocate_engine_request(e, T0, NULL, &first) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_engine_request(e, T0, &req, &first) == ALLOCATE_OK);
  struct allocate_output out;
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1);
  EXPECT(strcmp(out.host, "h1") == 0 && strcmp(out.password, "p1") == 0); /* best fit: the small one */
  EXPECT(out.expires == T0 / 1000 + 3600);
  EXPECT(out.resource_count == 1);
  EXPECT(allocate_engine_poll_output(e, &out) == ALLOCATE_EMPTY);

  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\", \"tag\": [\"x\"]}", &second) ==
         ALLOCATE_INVALID_REQUEST);
  allocate_last_error_message(msg, sizeof msg, NULL);
  EXPECT(strstr(msg, "unknown field `tag`") != NULL);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\", \"tags\": [\"nvidia\"]}", &second) ==
         ALLOCATE_OK);
  char *json = NULL;
  EXPECT(allocate_engine_poll_output_json(e, &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"status\":\"ready\"") != NULL && strstr(json, "\"to\":\"client\"") != NULL);
  allocate_string_free(json);

  EXPECT(allocate_engine_inventory_json(e, &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"state\":\"allocated\"") != NULL && strstr(json, "p1") == NULL);
  allocate_string_free(json);
  EXPECT(allocate_engine_allocation_json(e, &first, &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"state\":\"ready\"") != NULL);
  allocate_string_free(json);
  EXPECT(allocate_engine_current_json(e, &first, &json) == ALLOCATE_OK); /* what a follower sees first */
  EXPECT(json[0] == '[' && strstr(json, "\"status\":\"ready\"") != NULL && strstr(json, "p1") != NULL);
  allocate_string_free(json);
  /* Why not: a dry run, username optional; the typo'd GPU model is named. */
  EXPECT(allocate_engine_explain_json(e, "{\"gpu\": {\"label\": \"RTX 2090\"}}", &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"matching_resources\":0") != NULL && strstr(json, "\"reason\":\"gpu_label\"") != NULL);
  EXPECT(strstr(json, "0 of 2 registered resources have a GPU whose label contains \\\"RTX 2090\\\"") != NULL);
  allocate_string_free(json);
  EXPECT(allocate_engine_explain_json(e, "{\"tags\": [\"nvidia\"]}", &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"free\":0") != NULL &&
         strstr(json, "\"count\":2,\"message\":\"2 of 2 matching resources are allocated\",\"reason\":\"allocated\"") != NULL);
  allocate_string_free(json);
  EXPECT(allocate_engine_explain_json(e, "{\"gpu\": {\"count\": 0}}", &json) == ALLOCATE_INVALID_REQUEST);
  allocate_last_error_message(msg, sizeof msg, NULL);
  EXPECT(strstr(msg, "requirements.gpu.count") != NULL);
  EXPECT(allocate_engine_explain_json(e, NULL, &json) == ALLOCATE_NULL_PARAMETER);
  memset(&missing, 0, sizeof missing);
  EXPECT(allocate_engine_allocation_json(e, &missing, &json) == ALLOCATE_NOT_FOUND);
  EXPECT(allocate_engine_current_json(e, &missing, &json) == ALLOCATE_NOT_FOUND);
  EXPECT(allocate_engine_release(e, T0, &missing) == ALLOCATE_NOT_FOUND);

  uint64_t effective = 0;
  EXPECT(allocate_engine_set_expires(e, T0, &first, T0 / 1000 + 60, &effective) == ALLOCATE_OK);
  EXPECT(effective == T0 / 1000 + 60);
  uint64_t deadline = 0;
  EXPECT(allocate_engine_poll_timeout(e, &deadline) == ALLOCATE_OK && deadline == T0 + 60000);
  EXPECT(allocate_engine_handle_timeout(e, deadline) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_EXPIRED, NULL) == 1);
  EXPECT(allocate_engine_release(e, T0 + 60000, &second) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_RELEASED, NULL) == 1);
  EXPECT(allocate_engine_current_json(e, &second, &json) == ALLOCATE_NOT_FOUND); /* ended */
  EXPECT(allocate_engine_poll_timeout(e, &deadline) == ALLOCATE_EMPTY);
  EXPECT(allocate_engine_client_gone(e, T0 + 60000, &second) == ALLOCATE_OK);

  /* Snapshot and restore. */
  char *snap = NULL;
  EXPECT(allocate_engine_snapshot_json(e, &snap) == ALLOCATE_OK);
  struct allocate_engine *restored = NULL;
  EXPECT(allocate_engine_restore_json("{\"nope\": 1}", 1, &restored) == ALLOCATE_INVALID_REQUEST);
  EXPECT(allocate_engine_restore_json(snap, 1, &restored) == ALLOCATE_OK);
  char *snap2 = NULL;
  EXPECT(allocate_engine_snapshot_json(restored, &snap2) == ALLOCATE_OK);
  EXPECT(strcmp(snap, snap2) == 0);
  allocate_string_free(snap);
  allocate_string_free(snap2);
  allocate_engine_free(restored);
  allocate_engine_free(e);
}

static const char *AGENT_RES =
    "[{\"labels\": [\"a\"], \"cpu_count\": 4, \"memory_gb\": 8, \"gpu\": [], \"type\": \"VM\"}]";

static void test_provisioning_round_trips(void) {
  struct allocate_engine *e = new_engine();
  struct allocate_uuid agent, other, first, second;
  allocate_uuid_parse(AGENT, &agent);
  allocate_uuid_parse("00000000-0000-4000-8000-000000000001", &other);
  EXPECT(allocate_engine_register(e, T0, &agent, AGENT_RES, NULL) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &first) == ALLOCATE_OK);
  struct allocate_output out;
  EXPECT(drain(e, ALLOCATE_OUTPUT_PROVISION, &out) == 1);
  EXPECT(strcmp(out.username, "ci") == 0 && memcmp(&out.agent_id, &agent, sizeof agent) == 0);
  EXPECT(allocate_engine_provisioned(e, T0, &other, &first, "h", "u", "p", NULL) == ALLOCATE_FORBIDDEN);
  EXPECT(allocate_engine_provisioned(e, T0, &agent, &first, NULL, "u", "p", NULL) == ALLOCATE_NULL_PARAMETER);
  EXPECT(allocate_engine_provisioned(e, T0, &agent, &first, "h", "u", "p", NULL) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1);
  EXPECT(allocate_engine_provisioned(e, T0, &agent, &first, "h", "u", "p", NULL) == ALLOCATE_CONFLICT);

  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &second) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_QUEUED, &out) == 1 && out.position == 1 && out.has_eta);
  EXPECT(allocate_engine_disconnect(e, T0, &agent) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_OFFLINE, NULL) == 1);
  EXPECT(allocate_engine_disconnect(e, T0, &other) == ALLOCATE_NOT_FOUND);
  EXPECT(allocate_engine_register(e, T0, &agent, AGENT_RES, NULL) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_ONLINE, NULL) == 1);

  EXPECT(allocate_engine_release(e, T0, &first) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_RELEASE, NULL) == 1);
  EXPECT(allocate_engine_release_acknowledged(e, T0, &other, &first) == ALLOCATE_FORBIDDEN);
  EXPECT(allocate_engine_release_acknowledged(e, T0, &agent, &first) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_PROVISION, NULL) == 1);
  EXPECT(allocate_engine_provisioned(e, T0, &agent, &second, NULL, NULL, NULL, "disk full") == ALLOCATE_OK);
  char *json = NULL;
  EXPECT(allocate_engine_inventory_json(e, &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "provisioning failed: disk full") != NULL);
  allocate_string_free(json);

  struct allocate_uuid inv;
  char *ids = NULL;
  EXPECT(allocate_engine_register(e, T0, &agent, AGENT_RES, &ids) == ALLOCATE_OK);
  char idtext[37];
  memcpy(idtext, ids + 2, 36);
  idtext[36] = 0;
  allocate_string_free(ids);
  EXPECT(allocate_uuid_parse(idtext, &inv) == ALLOCATE_OK);
  EXPECT(allocate_engine_set_maintenance(e, T0, &inv, "fan broken") == ALLOCATE_OK);
  EXPECT(allocate_engine_set_maintenance(e, T0, &inv, NULL) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_PROVISION, NULL) == 1); /* clearing the error serves the queue */
  EXPECT(allocate_engine_set_maintenance(e, T0, &other, NULL) == ALLOCATE_NOT_FOUND);

  /* A second agent may not claim the first one's inventory id. */
  char claim[256];
  snprintf(claim, sizeof claim,
           "[{\"inventory_id\": \"%s\", \"cpu_count\": 1, \"memory_gb\": 1}]", idtext);
  EXPECT(allocate_engine_register(e, T0, &other, claim, NULL) == ALLOCATE_CONFLICT);
  allocate_engine_free(e);
}

struct policy_state {
  int vetoes;
  int scores;
};

static bool veto_small(void *userdata, const struct allocate_request_view *request,
                       const struct allocate_candidate *candidate) {
  struct policy_state *state = userdata;
  state->vetoes++;
  return strcmp(request->username, "big-only") == 0 && candidate->cpu_count < 64;
}

static bool score_big(void *userdata, const struct allocate_request_view *request,
                      const struct allocate_candidate *candidate, int64_t *score_out) {
  struct policy_state *state = userdata;
  (void)request;
  state->scores++;
  *score_out = (int64_t)candidate->cpu_count;
  return candidate->gpus_len == 1 && strcmp(candidate->gpus[0].label, "RTX 2080") == 0;
}

/* A callback that calls back into its own engine: refused with ALLOCATE_REENTERED, no deadlock. */
struct reentry {
  struct allocate_engine *engine;
  enum allocate_result inner;
  char message[256];
};

static bool veto_reentering(void *userdata, const struct allocate_request_view *request,
                            const struct allocate_candidate *candidate) {
  struct reentry *r = userdata;
  char *json = NULL;
  (void)request;
  (void)candidate;
  r->inner = allocate_engine_inventory_json(r->engine, &json);
  allocate_last_error_message(r->message, sizeof r->message, NULL);
  allocate_string_free(json);
  return false;
}

static void test_policy(void) {
  struct allocate_engine *e = new_engine();
  struct allocate_uuid agent, id;
  allocate_uuid_parse(AGENT, &agent);
  EXPECT(allocate_engine_register(e, T0, &agent, STATIC_RES, NULL) == ALLOCATE_OK);
  struct policy_state state = {0, 0};
  EXPECT(allocate_engine_set_policy(e, veto_small, NULL, &state) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"big-only\"}", &id) == ALLOCATE_OK);
  struct allocate_output out;
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1 && strcmp(out.host, "h2") == 0);
  EXPECT(state.vetoes >= 1);
  EXPECT(allocate_engine_release(e, T0, &id) == ALLOCATE_OK);
  EXPECT(allocate_engine_set_policy(e, NULL, score_big, &state) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &id) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1 && strcmp(out.host, "h2") == 0);
  EXPECT(state.scores == 2);
  EXPECT(allocate_engine_release(e, T0, &id) == ALLOCATE_OK);
  EXPECT(allocate_engine_set_policy(e, NULL, NULL, NULL) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &id) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1 && strcmp(out.host, "h1") == 0);
  EXPECT(allocate_engine_release(e, T0, &id) == ALLOCATE_OK);

  struct reentry r = {e, ALLOCATE_OK, ""};
  EXPECT(allocate_engine_set_policy(e, veto_reentering, NULL, &r) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &id) == ALLOCATE_OK);
  EXPECT(r.inner == ALLOCATE_REENTERED && strstr(r.message, "policy callback") != NULL);
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1); /* the outer call went on */
  allocate_engine_free(e);
}

/* Several resources at once: both static ones, in one ready. */
static void test_several(void) {
  struct allocate_engine *e = new_engine();
  struct allocate_uuid agent, id;
  allocate_uuid_parse(AGENT, &agent);
  EXPECT(allocate_engine_register(e, T0, &agent, STATIC_RES, NULL) == ALLOCATE_OK);
  struct allocate_request req = {0};
  req.username = "ci";
  req.count = 65;
  EXPECT(allocate_engine_request(e, T0, &req, &id) == ALLOCATE_INVALID_REQUEST);
  char msg[256];
  allocate_last_error_message(msg, sizeof msg, NULL);
  EXPECT(strstr(msg, "requirements.count") != NULL);
  req.count = 2;
  EXPECT(allocate_engine_request(e, T0, &req, &id) == ALLOCATE_OK);
  char *json = NULL;
  EXPECT(allocate_engine_poll_output_json(e, &json) == ALLOCATE_OK);
  EXPECT(strstr(json, "\"resources\":[") != NULL && strstr(json, "h2") != NULL);
  allocate_string_free(json);
  EXPECT(allocate_engine_release(e, T0, &id) == ALLOCATE_OK);
  drain(e, ALLOCATE_OUTPUT_RELEASED, NULL);
  EXPECT(allocate_engine_request(e, T0, &req, &id) == ALLOCATE_OK);
  struct allocate_output out;
  EXPECT(drain(e, ALLOCATE_OUTPUT_READY, &out) == 1);
  EXPECT(out.resource_count == 2 && strcmp(out.host, "h1") == 0);
  allocate_engine_free(e);
}

static void test_quotas(void) {
  struct allocate_config config;
  EXPECT(allocate_config_default(&config) == ALLOCATE_OK && !config.fair_share);
  config.fair_share = true;
  struct allocate_engine *e = NULL;
  EXPECT(allocate_engine_new(&config, 7, &e) == ALLOCATE_OK);
  struct allocate_uuid agent, first, second, id;
  allocate_uuid_parse(AGENT, &agent);
  EXPECT(allocate_engine_register(e, T0, &agent, STATIC_RES, NULL) == ALLOCATE_OK);
  char msg[256];
  EXPECT(allocate_engine_set_quotas(e, T0, "{\"users\": {\"ci\": {\"gpus_mx\": 1}}}") ==
         ALLOCATE_INVALID_REQUEST);
  allocate_last_error_message(msg, sizeof msg, NULL);
  EXPECT(strstr(msg, "field users.ci.gpus_mx") != NULL);
  EXPECT(allocate_engine_set_quotas(e, T0, "{\"default\": {\"resources_max\": 1}}") == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\", \"count\": 2}", &id) ==
         ALLOCATE_QUOTA_EXCEEDED);
  /* One resource each: the second request waits for the first to end. */
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &first) == ALLOCATE_OK);
  EXPECT(allocate_engine_request_json(e, T0, "{\"username\": \"ci\"}", &second) == ALLOCATE_OK);
  EXPECT(drain(e, ALLOCATE_OUTPUT_QUEUED, NULL) == 1);
  /* A tighter policy ends the waiting request it could never fit. */
  EXPECT(allocate_engine_set_quotas(e, T0, "{\"default\": {\"allocations_max\": 0}}") == ALLOCATE_OK);
  struct allocate_output out;
  EXPECT(drain(e, ALLOCATE_OUTPUT_QUOTA_REFUSED, &out) == 1);
  EXPECT(memcmp(&out.allocation_id, &second, sizeof second) == 0);
  EXPECT(allocate_engine_set_quotas(e, T0, NULL) == ALLOCATE_OK);
  allocate_engine_free(e);
}

int main(void) {
  test_errors_and_helpers();
  test_lifecycle_static();
  test_provisioning_round_trips();
  test_policy();
  test_several();
  test_quotas();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
