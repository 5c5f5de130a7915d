/* Private to libpivot: CRC-32 (the zlib/PNG polynomial). */
#ifndef PV_CRC32_H
#define PV_CRC32_H
#include <stddef.h>
#include <stdint.h>
/* Start with crc = 0; feed pieces in order. crc32("123456789") = 0xcbf43926. */
uint32_t pv_crc32_update(uint32_t crc, const void *buf, size_t len);
#endif
