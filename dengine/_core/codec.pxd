# cython: language_level=3
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* CRC-32 with the zlib polynomial (reflected 0xEDB88320), slicing-by-8. Written here,
       independent of zlib, so that the reference (which uses zlib.crc32) checks it. */
    static uint32_t dengine_crc_table[8][256];

    static void dengine_crc_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            dengine_crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int t = 1; t < 8; t++)
                dengine_crc_table[t][i] = (dengine_crc_table[t - 1][i] >> 8)
                    ^ dengine_crc_table[0][dengine_crc_table[t - 1][i] & 0xFFu];
    }

    static inline uint32_t dengine_load_u32(const unsigned char *p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
            | ((uint32_t)p[3] << 24);
    }

    static inline uint64_t dengine_load_u64(const unsigned char *p) {
        return (uint64_t)dengine_load_u32(p) | ((uint64_t)dengine_load_u32(p + 4) << 32);
    }

    static inline void dengine_store_u32(unsigned char *p, uint32_t v) {
        p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
        p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
    }

    static inline void dengine_store_u64(unsigned char *p, uint64_t v) {
        dengine_store_u32(p, (uint32_t)v);
        dengine_store_u32(p + 4, (uint32_t)(v >> 32));
    }

    /* Continue a CRC-32 (as zlib.crc32(data, crc) does); start with crc = 0. */
    static uint32_t dengine_crc_update(uint32_t crc, const unsigned char *p, size_t n) {
        const uint32_t (*T)[256] = (const uint32_t (*)[256])dengine_crc_table;
        crc = ~crc;
        while (n >= 8) {
            uint32_t a = dengine_load_u32(p) ^ crc;
            uint32_t b = dengine_load_u32(p + 4);
            crc = T[7][a & 0xFF] ^ T[6][(a >> 8) & 0xFF] ^ T[5][(a >> 16) & 0xFF] ^ T[4][a >> 24]
                ^ T[3][b & 0xFF] ^ T[2][(b >> 8) & 0xFF] ^ T[1][(b >> 16) & 0xFF] ^ T[0][b >> 24];
            p += 8;
            n -= 8;
        }
        while (n--) crc = (crc >> 8) ^ T[0][(crc ^ *p++) & 0xFF];
        return ~crc;
    }
    """
    void dengine_crc_init() noexcept nogil
    uint32_t dengine_crc_update(uint32_t crc, const unsigned char *p, size_t n) noexcept nogil
    uint32_t dengine_load_u32(const unsigned char *p) noexcept nogil
    uint64_t dengine_load_u64(const unsigned char *p) noexcept nogil
    void dengine_store_u32(unsigned char *p, uint32_t v) noexcept nogil
    void dengine_store_u64(unsigned char *p, uint64_t v) noexcept nogil


# Wire sizes, as in the reference.
cdef enum:
    REC_HEADER = 12
    ENTRY_HEADER = 21
    MAX_RECORD = 1 << 30


cdef inline uint32_t crc32(const unsigned char *p, size_t n) noexcept nogil:
    return dengine_crc_update(0, p, n)


cdef inline void put_record_header(unsigned char *out, uint32_t n, uint32_t payload_crc) noexcept nogil:
    """Write the 12-byte record header for a payload of ``n`` bytes with ``payload_crc``."""
    dengine_store_u32(out, n)
    dengine_store_u32(out + 4, payload_crc)
    dengine_store_u32(out + 8, crc32(out, 8))


cdef inline void put_entry_header(unsigned char *out, uint64_t term, uint64_t index,
                                  uint8_t kind, uint32_t n) noexcept nogil:
    """Write the 21-byte entry header: term, index, kind, payload length."""
    dengine_store_u64(out, term)
    dengine_store_u64(out + 8, index)
    out[16] = kind
    dengine_store_u32(out + 17, n)
