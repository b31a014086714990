// The header compiles as C++ and its functions link from C++.
#include <allocate.h>

#include <cstdio>

int main() {
  allocate_config config{};
  if (allocate_config_default(&config) != ALLOCATE_OK) {
    return 1;
  }
  allocate_engine *engine = nullptr;
  if (allocate_engine_new(&config, 3, &engine) != ALLOCATE_OK) {
    return 1;
  }
  uint64_t deadline = 0;
  const bool idle = allocate_engine_poll_timeout(engine, &deadline) == ALLOCATE_EMPTY;
  allocate_engine_free(engine);
  std::printf("c++ %s, idle=%d\n", allocate_version(), idle ? 1 : 0);
  return idle ? 0 : 1;
}
