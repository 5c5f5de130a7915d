/* Runtime ISA dispatch on cpuid feature bits (never CPU model names). */
#include <string.h>

#include "cpu-impl.h"

static bool isa_runs(const pv_cpu_isa *isa) {
  if (!isa->ukr) return false;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == &pv_cpu_isa_avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  if (isa == &pv_cpu_isa_avx2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
  /* Advanced SIMD is mandatory in AArch64. */
  if (isa == &pv_cpu_isa_neon) return true;
#endif
  return isa == &pv_cpu_isa_c;
}

static const pv_cpu_isa *const all_isas[] = {
    &pv_cpu_isa_avx512, &pv_cpu_isa_avx2, &pv_cpu_isa_neon, &pv_cpu_isa_c};
static const char *const isa_names[] = {"avx512", "avx2", "neon", "c", NULL};

const char *const *pv_cpu_isa_names(void) {
  return isa_names;
}

const pv_cpu_isa *pv_cpu_isa_get(const char *name) {
  for (size_t i = 0; i < sizeof all_isas / sizeof all_isas[0]; i++)
    if (!strcmp(all_isas[i]->name, name))
      return isa_runs(all_isas[i]) ? all_isas[i] : NULL;
  return NULL;
}

const pv_cpu_isa *pv_cpu_isa_best(void) {
  for (size_t i = 0; i < sizeof all_isas / sizeof all_isas[0]; i++)
    if (isa_runs(all_isas[i])) return all_isas[i];
  return &pv_cpu_isa_c;
}
