/*
 * _fastcsv: splits one piece of unquoted delimited text (nfdump CSV exports and
 * other flow tables) into the columns a reader wants, without the GIL.
 *
 *   split(piece, n_columns, wanted, kinds, delimiter)
 *     -> None when the piece holds a quote (") or a carriage return that does not
 *        end a line (the caller reads such a piece with pyarrow.csv instead), else
 *        (rows, lines, columns, bad, high_bytes) where
 *        rows:       records of exactly n_columns fields (an empty line is one
 *                    record of empty fields, as pyarrow.csv makes it);
 *        lines:      physical lines in the piece (`\n`, `\r\n`, or the end);
 *        columns:    for each index in `wanted`, (offsets, text, extra): int32
 *                    offsets (rows + 1) and the field bytes, an Arrow string
 *                    column, and what its kind adds (below);
 *        bad:        (line, fields, start, end) for each other line, 1-based line
 *                    number within the piece and the byte span of its text;
 *        high_bytes: some wanted field holds a byte >= 0x80 (the caller must check
 *                    that it is UTF-8 before using the text or the extras).
 *
 * Kinds (the extras only cover the plainest spellings; the caller reads every other
 * value from the text, so they are a shortcut, never a second opinion):
 *   TEXT  None
 *   INT   (int64 values, uint8 plain): plain = 1 to 18 ASCII digits, nothing else
 *   TIME  (int64 microseconds since 1970, uint8 plain): plain =
 *         `YYYY-MM-DD[ T]HH:MM:SS[.f]` with 1 to 6 decimals, a real date from 1900
 *         on, hour < 24, minute and second < 60 (no zone: local time as written)
 *   IP    uint8 bad: the text is not an IPv4 or IPv6 address (see `address_ok`)
 *   CODE  (int32 codes, list of the distinct texts), a dictionary encoding, or None
 *         when the column has more than MAX_CODES distinct values or a long one
 *
 * The text split is what pyarrow.csv gives for the same piece (which, having no
 * quote, reads the same with quoting on or off).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { KIND_TEXT, KIND_INT, KIND_TIME, KIND_IP, KIND_CODE, KIND_N };

#define MAX_CODES 64
#define MAX_CODE_LEN 32

typedef struct {
    int kind;
    char *data; /* the text, grown as needed */
    size_t size, cap;
    /* per-row arrays, in bytes objects sized for every line of the piece */
    PyObject *offsets_bytes, *values_bytes, *flags_bytes, *codes_bytes;
    int32_t *offsets;
    int64_t *values; /* INT, TIME */
    uint8_t *flags;  /* INT, TIME: plain; IP: bad */
    int32_t *codes;  /* CODE */
    int n_codes, codes_full;
    uint8_t code_len[MAX_CODES];
    uint64_t code_word[MAX_CODES]; /* codes of up to 8 bytes as one word (zero padded) */
    char code_text[MAX_CODES][MAX_CODE_LEN];
} Column;

typedef struct {
    Py_ssize_t line, fields, start, end;
} BadLine;

#define BLOCK_ROWS 256 /* rows split before their fields are copied out, column by column */

typedef struct {
    Column *columns;
    int n_wanted;
    size_t rows, row_cap;
    Py_ssize_t *starts, *ends; /* field bounds of a block: [column * BLOCK_ROWS + row] */
    int block_rows;
    BadLine *bad;
    size_t n_bad, bad_cap;
    Py_ssize_t lines;
    int lone_cr, no_memory;
} Split;

static int grow(void **buffer, size_t *cap, size_t need, size_t item) {
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need)
        cap2 *= 2;
    void *grown = realloc(*buffer, cap2 * item);
    if (!grown)
        return -1;
    *buffer = grown;
    *cap = cap2;
    return 0;
}

static void *new_bytes(PyObject **holder, size_t size) {
    *holder = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    return *holder ? PyBytes_AS_STRING(*holder) : NULL;
}

/* Per-row arrays of every column for `rows` rows (+1 offset); needs the GIL. */
static int make_row_arrays(Split *s, size_t rows) {
    for (int k = 0; k < s->n_wanted; k++) {
        Column *c = &s->columns[k];
        if (!(c->offsets = new_bytes(&c->offsets_bytes, (rows + 1) * sizeof(int32_t))))
            return -1;
        c->offsets[0] = 0;
        if ((c->kind == KIND_INT || c->kind == KIND_TIME) &&
            !(c->values = new_bytes(&c->values_bytes, rows * sizeof(int64_t))))
            return -1;
        if ((c->kind == KIND_INT || c->kind == KIND_TIME || c->kind == KIND_IP) &&
            !(c->flags = new_bytes(&c->flags_bytes, rows)))
            return -1;
        if (c->kind == KIND_CODE && !(c->codes = new_bytes(&c->codes_bytes, rows * sizeof(int32_t))))
            return -1;
    }
    s->row_cap = rows;
    return 0;
}

/* Lines in the piece (newlines, and a last line without one); *has_cr: some `\r`;
   *has_quote: some `"`. */
static size_t count_lines(const char *buf, Py_ssize_t len, int *has_cr, int *has_quote) {
    size_t lines = 0;
    Py_ssize_t p = 0;
    int cr = 0, quote = 0;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128(), newlines = _mm_set1_epi8('\n'), returns = _mm_set1_epi8('\r'),
                  quotes = _mm_set1_epi8('"');
    while (p + 16 <= len) {
        __m128i counts = zero, seen_cr = zero, seen_quote = zero;
        for (int blocks = 0; blocks < 255 && p + 16 <= len; blocks++, p += 16) {
            __m128i block = _mm_loadu_si128((const __m128i *)(buf + p));
            counts = _mm_sub_epi8(counts, _mm_cmpeq_epi8(block, newlines));
            seen_cr = _mm_or_si128(seen_cr, _mm_cmpeq_epi8(block, returns));
            seen_quote = _mm_or_si128(seen_quote, _mm_cmpeq_epi8(block, quotes));
        }
        __m128i sums = _mm_sad_epu8(counts, zero);
        lines += (size_t)_mm_cvtsi128_si32(sums) + (size_t)_mm_cvtsi128_si32(_mm_unpackhi_epi64(sums, sums));
        cr |= _mm_movemask_epi8(seen_cr) != 0;
        quote |= _mm_movemask_epi8(seen_quote) != 0;
    }
#endif
    for (; p < len; p++) {
        lines += buf[p] == '\n';
        cr |= buf[p] == '\r';
        quote |= buf[p] == '"';
    }
    *has_cr = cr;
    *has_quote = quote;
    return lines + (len > 0 && buf[len - 1] != '\n');
}

/* ------------------------------------------------------------------ plain values */

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static int plain_int(const char *p, size_t n, int64_t *out) {
    if (n < 1 || n > 18)
        return 0;
    int64_t value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return 0;
        value = value * 10 + (p[i] - '0');
    }
    *out = value;
    return 1;
}

static int digits(const char *p, int n) {
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        value = value * 10 + (p[i] - '0');
    }
    return value;
}

static int leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int plain_time(const char *p, size_t n, int64_t *out) {
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n < 19 || n > 26 || n == 20 || p[4] != '-' || p[7] != '-' || (p[10] != ' ' && p[10] != 'T') ||
        p[13] != ':' || p[16] != ':')
        return 0;
    int year = digits(p, 4), month = digits(p + 5, 2), day = digits(p + 8, 2);
    int hour = digits(p + 11, 2), minute = digits(p + 14, 2), second = digits(p + 17, 2);
    if (year < 1900 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 59)
        return 0;
    if (day > month_days[month - 1] + (month == 2 && leap(year)))
        return 0;
    int64_t micros = 0;
    if (n > 19) {
        if (p[19] != '.')
            return 0;
        int places = (int)n - 20, fraction = digits(p + 20, places);
        if (fraction < 0)
            return 0;
        micros = fraction;
        for (int i = places; i < 6; i++)
            micros *= 10;
    }
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    *out = seconds * 1000000 + micros;
    return 1;
}

/* ------------------------------------------------------------------ addresses
 *
 * An address is the text nfdump, Zeek and Suricata print, nothing looser:
 * - IPv4: four decimal parts 0-255 joined by dots; a part with a leading zero
 *   (`010.1.1.1`) is refused, as inet_pton and Python's ipaddress refuse it (some
 *   parsers read it as octal; no flow tool prints one);
 * - IPv6 (RFC 4291 text): at most 8 groups of 1 to 4 hex digits (either case), at
 *   most one `::` standing for one or more zero groups, the last 32 bits may be a
 *   dotted IPv4 address as above. No zone id (`fe80::1%eth0`): the flow tools do
 *   not print one and an address in a flow table is global text.
 * No space, sign or other byte around or inside. */

static uint8_t HEX_DIGIT[256];

static inline int ipv4_ok(const char *p, size_t n) {
    if (n < 7 || n > 15)
        return 0;
    const char *end = p + n;
    for (int part = 0;; part++) { /* 1 to 3 digits, no leading zero, at most 255 */
        if (!is_digit(p[0]))
            return 0;
        int value = p[0] - '0';
        const char *q = p + 1;
        if (q < end && is_digit(*q) && value) {
            value = value * 10 + (*q++ - '0');
            if (q < end && is_digit(*q)) {
                value = value * 10 + (*q++ - '0');
                if (value > 255)
                    return 0;
            }
        }
        if (part == 3)
            return q == end;
        if (q == end || *q != '.')
            return 0;
        p = q + 1;
        if (p == end)
            return 0;
    }
}

static int ipv6_ok(const char *p, size_t n) {
    if (n < 2 || n > 45)
        return 0;
    int groups = 0, gap = 0;
    size_t i = 0;
    if (p[0] == ':') { /* only as the start of a leading `::` */
        if (p[1] != ':')
            return 0;
        gap = 1;
        i = 2;
    }
    while (i < n) {
        size_t start = i;
        while (i < n && i - start < 5 && HEX_DIGIT[(unsigned char)p[i]])
            i++;
        if (i < n && p[i] == '.') { /* the dotted IPv4 tail: two groups, the end */
            if (!ipv4_ok(p + start, n - start))
                return 0;
            groups += 2;
            break;
        }
        if (i == start || i - start > 4 || ++groups > 8)
            return 0;
        if (i == n)
            break;
        if (p[i] != ':' || ++i == n) /* a lone `:` may not end the text */
            return 0;
        if (p[i] == ':') {
            if (gap)
                return 0;
            gap = 1;
            i++;
        }
    }
    return gap ? groups <= 7 : groups == 8;
}

/* 1 when p[0..n) is IPv4 or IPv6 address text as described above. */
static inline int address_ok(const char *p, size_t n) { return ipv4_ok(p, n) || ipv6_ok(p, n); }

static inline int ip_bad(const char *p, size_t n) { return !address_ok(p, n); }

static inline int same_text(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) /* codes are short: no call to memcmp */
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The first n (<= 8) bytes at p as a zero-padded word; `readable`: 8 bytes may be read. */
static inline uint64_t word_of(const char *p, size_t n, int readable) {
    uint64_t word = 0;
    memcpy(&word, p, readable ? 8 : n);
    memset((char *)&word + n, 0, 8 - n);
    return word;
}

static void add_code(Column *c, size_t row, const char *p, size_t n, int readable) {
    if (c->codes_full)
        return;
    if (n <= 8) {
        uint64_t word = word_of(p, n, readable);
        for (int i = 0; i < c->n_codes; i++) {
            if (c->code_len[i] == n && c->code_word[i] == word) {
                c->codes[row] = i;
                return;
            }
        }
    } else {
        for (int i = 0; i < c->n_codes; i++) {
            if (c->code_len[i] == n && same_text(c->code_text[i], p, n)) {
                c->codes[row] = i;
                return;
            }
        }
    }
    if (c->n_codes == MAX_CODES || n > MAX_CODE_LEN) {
        c->codes_full = 1;
        return;
    }
    memcpy(c->code_text[c->n_codes], p, n);
    c->code_len[c->n_codes] = (uint8_t)n;
    c->code_word[c->n_codes] = n <= 8 ? word_of(p, n, 0) : 0;
    c->codes[row] = c->n_codes++;
}

/* ------------------------------------------------------------------ the scan */

/* The rows of the block to the columns: text and offsets, then what the kind adds,
   one column at a time (a few output streams per loop, not all of them per row). */
static int flush_block(Split *s, const char *buf, Py_ssize_t len) {
    size_t first = s->rows, n = (size_t)s->block_rows;
    for (int k = 0; k < s->n_wanted; k++) {
        Column *c = &s->columns[k];
        const Py_ssize_t *starts = s->starts + (size_t)k * BLOCK_ROWS, *ends = s->ends + (size_t)k * BLOCK_ROWS;
        size_t text = 0;
        for (size_t r = 0; r < n; r++)
            text += (size_t)(ends[r] - starts[r]);
        if (grow((void **)&c->data, &c->cap, c->size + text + 32, 1)) /* 32 spare bytes for the moves below */
            return -1;
        int32_t *offsets = c->offsets + first + 1;
        for (size_t r = 0; r < n; r++) {
            const char *p = buf + starts[r];
            size_t size = (size_t)(ends[r] - starts[r]);
#ifdef __SSE2__
            if (size <= 32 && starts[r] + 32 <= len) { /* short fields: two 16-byte moves, no call */
                _mm_storeu_si128((__m128i *)(c->data + c->size), _mm_loadu_si128((const __m128i *)p));
                _mm_storeu_si128((__m128i *)(c->data + c->size + 16), _mm_loadu_si128((const __m128i *)(p + 16)));
            } else
#endif
                memcpy(c->data + c->size, p, size);
            c->size += size;
            offsets[r] = (int32_t)c->size;
        }
        switch (c->kind) {
        case KIND_INT:
            for (size_t r = 0; r < n; r++) {
                c->values[first + r] = 0;
                c->flags[first + r] = (uint8_t)plain_int(buf + starts[r], (size_t)(ends[r] - starts[r]), &c->values[first + r]);
            }
            break;
        case KIND_TIME:
            for (size_t r = 0; r < n; r++) {
                c->values[first + r] = 0;
                c->flags[first + r] = (uint8_t)plain_time(buf + starts[r], (size_t)(ends[r] - starts[r]), &c->values[first + r]);
            }
            break;
        case KIND_IP:
            for (size_t r = 0; r < n; r++)
                c->flags[first + r] = (uint8_t)ip_bad(buf + starts[r], (size_t)(ends[r] - starts[r]));
            break;
        case KIND_CODE:
            for (size_t r = 0; r < n && !c->codes_full; r++)
                add_code(c, first + r, buf + starts[r], (size_t)(ends[r] - starts[r]), starts[r] + 8 <= len);
            break;
        }
    }
    s->rows += n;
    s->block_rows = 0;
    return 0;
}

static int add_bad(Split *s, Py_ssize_t line, Py_ssize_t fields, Py_ssize_t start, Py_ssize_t end) {
    if (grow((void **)&s->bad, &s->bad_cap, s->n_bad + 1, sizeof(BadLine)))
        return -1;
    s->bad[s->n_bad++] = (BadLine){line, fields, start, end};
    return 0;
}

/* True when every carriage return in the piece ends a line (`\r\n`, or the piece). */
static int carriage_returns_end_lines(const char *buf, Py_ssize_t len) {
    const char *p = buf, *end = buf + len;
    while ((p = memchr(p, '\r', (size_t)(end - p))) != NULL) {
        if (p + 1 < end && p[1] != '\n')
            return 0;
        p++;
    }
    return 1;
}

static uint8_t BITS_SET[256];

#define WANTED_FIELD_ENDS(at)                                                                                          \
    do {                                                                                                               \
        if (field < n_columns && slot[field] >= 0) {                                                                   \
            starts[slot[field] * BLOCK_ROWS] = field_start;                                                            \
            ends[slot[field] * BLOCK_ROWS] = (at);                                                                     \
        }                                                                                                              \
        field++;                                                                                                       \
        field_start = (at) + 1;                                                                                        \
    } while (0)

/* Splits the line that starts at `start`: the bounds of its wanted fields go to
   starts/ends[slot * BLOCK_ROWS]; *line_end is where its text ends (before `\r\n`,
   `\n` or the end of the piece) and *next where the next line starts. Returns the
   number of fields. With SSE2, 16 bytes are looked at a time, for delimiters and the
   newline at once; past the last wanted field, delimiters are only counted. */
static Py_ssize_t split_line(const char *buf, Py_ssize_t len, Py_ssize_t start, Py_ssize_t n_columns, const int *slot,
                             Py_ssize_t last_wanted, char delimiter, Py_ssize_t *starts, Py_ssize_t *ends,
                             Py_ssize_t *line_end, Py_ssize_t *next) {
    Py_ssize_t field = 0, field_start = start, p = start, end = -1;
#ifdef __SSE2__
    const __m128i delimiters = _mm_set1_epi8(delimiter), newlines = _mm_set1_epi8('\n');
    for (; p + 16 <= len; p += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)(buf + p));
        unsigned found = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, delimiters));
        unsigned newline = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, newlines));
        if (newline) {
            found &= (newline & -newline) - 1; /* the delimiters before it */
            end = p + __builtin_ctz(newline);
        }
        if (field > last_wanted) {
            field += BITS_SET[found & 0xff] + BITS_SET[found >> 8];
        } else {
            while (found) {
                Py_ssize_t at = p + __builtin_ctz(found);
                found &= found - 1;
                WANTED_FIELD_ENDS(at);
            }
        }
        if (end >= 0)
            break;
    }
#endif
    if (end < 0) {
        for (; p < len; p++) {
            if (buf[p] == '\n') {
                end = p;
                break;
            }
            if (buf[p] == delimiter)
                WANTED_FIELD_ENDS(p);
        }
        if (end < 0)
            end = len;
    }
    *next = end < len ? end + 1 : len;
    if (end > start && buf[end - 1] == '\r')
        end--;
    if (field < n_columns && slot[field] >= 0) { /* the last field */
        starts[slot[field] * BLOCK_ROWS] = field_start;
        ends[slot[field] * BLOCK_ROWS] = end;
    }
    *line_end = end;
    return field + 1;
}

/* `slot[i]` is the output column of field i (or -1); `has_cr`: the piece holds a `\r`. */
static void scan(Split *s, const char *buf, Py_ssize_t len, Py_ssize_t n_columns, const int *slot,
                 Py_ssize_t last_wanted, char delimiter, int has_cr) {
    if (has_cr && !carriage_returns_end_lines(buf, len)) {
        s->lone_cr = 1;
        return;
    }
    Py_ssize_t pos = 0;
    while (pos < len) {
        Py_ssize_t line_start = pos, line_end, *starts = s->starts + s->block_rows, *ends = s->ends + s->block_rows;
        Py_ssize_t fields = split_line(buf, len, line_start, n_columns, slot, last_wanted, delimiter, starts, ends,
                                       &line_end, &pos);
        s->lines++;
        if (fields == n_columns) {
            s->block_rows++;
        } else if (line_end == line_start) { /* an empty line: one row of empty fields */
            for (int k = 0; k < s->n_wanted; k++)
                starts[k * BLOCK_ROWS] = ends[k * BLOCK_ROWS] = line_start;
            s->block_rows++;
        } else if (add_bad(s, s->lines, fields, line_start, line_end)) {
            s->no_memory = 1;
            return;
        }
        if ((s->block_rows == BLOCK_ROWS || pos >= len) && flush_block(s, buf, len)) {
            s->no_memory = 1;
            return;
        }
    }
}

/* ------------------------------------------------------------------ to Python */

static int any_high_byte(const Column *c) {
    uint64_t acc = 0, word;
    size_t i = 0;
    for (; i + 8 <= c->size; i += 8) {
        memcpy(&word, c->data + i, 8);
        acc |= word;
    }
    for (; i < c->size; i++)
        acc |= (unsigned char)c->data[i];
    return (acc & 0x8080808080808080ull) != 0;
}

/* A row array cut to `size` bytes; the reference passes to the caller. */
static PyObject *take_bytes(PyObject **holder, size_t size) {
    PyObject *bytes = *holder;
    *holder = NULL;
    if (bytes && (size_t)PyBytes_GET_SIZE(bytes) != size && _PyBytes_Resize(&bytes, (Py_ssize_t)size))
        return NULL;
    return bytes;
}

static PyObject *extra_of(Column *c, size_t rows) {
    switch (c->kind) {
    case KIND_INT:
    case KIND_TIME: {
        PyObject *values = take_bytes(&c->values_bytes, rows * sizeof(int64_t));
        PyObject *flags = values ? take_bytes(&c->flags_bytes, rows) : NULL;
        return flags ? Py_BuildValue("(NN)", values, flags) : (Py_XDECREF(values), NULL);
    }
    case KIND_IP:
        return take_bytes(&c->flags_bytes, rows);
    case KIND_CODE: {
        if (c->codes_full)
            Py_RETURN_NONE;
        PyObject *texts = PyList_New(c->n_codes);
        if (!texts)
            return NULL;
        for (int i = 0; i < c->n_codes; i++) {
            PyObject *text = PyBytes_FromStringAndSize(c->code_text[i], c->code_len[i]);
            if (!text) {
                Py_DECREF(texts);
                return NULL;
            }
            PyList_SET_ITEM(texts, i, text);
        }
        PyObject *codes = take_bytes(&c->codes_bytes, rows * sizeof(int32_t));
        return codes ? Py_BuildValue("(NN)", codes, texts) : (Py_DECREF(texts), NULL);
    }
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *result_of(Split *s) {
    PyObject *columns = PyList_New(s->n_wanted), *bad = PyList_New((Py_ssize_t)s->n_bad);
    if (!columns || !bad)
        goto fail;
    int high = 0;
    for (int k = 0; k < s->n_wanted; k++) {
        Column *c = &s->columns[k];
        high = high || any_high_byte(c);
        PyObject *extra = extra_of(c, s->rows);
        if (!extra)
            goto fail;
        PyObject *offsets = take_bytes(&c->offsets_bytes, (s->rows + 1) * sizeof(int32_t));
        if (!offsets) {
            Py_DECREF(extra);
            goto fail;
        }
        PyObject *triple = Py_BuildValue("(Ny#N)", offsets, c->data ? c->data : "", (Py_ssize_t)c->size, extra);
        if (!triple)
            goto fail;
        PyList_SET_ITEM(columns, k, triple);
    }
    for (size_t i = 0; i < s->n_bad; i++) {
        BadLine *b = &s->bad[i];
        PyObject *item = Py_BuildValue("(nnnn)", b->line, b->fields, b->start, b->end);
        if (!item)
            goto fail;
        PyList_SET_ITEM(bad, (Py_ssize_t)i, item);
    }
    return Py_BuildValue("(nnNNO)", (Py_ssize_t)s->rows, s->lines, columns, bad, high ? Py_True : Py_False);
fail:
    Py_XDECREF(columns);
    Py_XDECREF(bad);
    return NULL;
}

static void free_split(Split *s) {
    for (int k = 0; s->columns && k < s->n_wanted; k++) {
        Column *c = &s->columns[k];
        free(c->data);
        Py_XDECREF(c->offsets_bytes);
        Py_XDECREF(c->values_bytes);
        Py_XDECREF(c->flags_bytes);
        Py_XDECREF(c->codes_bytes);
    }
    free(s->columns);
    free(s->bad);
    free(s->starts);
    free(s->ends);
}

/* Reads `wanted` and `kinds` into slot[] (field -> column) and the columns' kinds. */
static int read_wanted(Split *s, PyObject *wanted, PyObject *kinds, Py_ssize_t n_columns, int *slot,
                       Py_ssize_t *last_wanted) {
    for (Py_ssize_t i = 0; i < n_columns; i++)
        slot[i] = -1;
    for (int k = 0; k < s->n_wanted; k++) {
        Py_ssize_t index = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(wanted, k));
        long kind = PyLong_AsLong(PySequence_Fast_GET_ITEM(kinds, k));
        if (PyErr_Occurred())
            return -1;
        if (index < 0 || index >= n_columns || slot[index] >= 0 || kind < 0 || kind >= KIND_N) {
            PyErr_SetString(PyExc_ValueError, "wanted columns must be distinct, within the columns, of known kinds");
            return -1;
        }
        slot[index] = k;
        s->columns[k].kind = (int)kind;
        if (index > *last_wanted)
            *last_wanted = index;
    }
    return 0;
}

static PyObject *split(PyObject *self, PyObject *args) {
    Py_buffer piece;
    Py_ssize_t n_columns;
    PyObject *wanted_arg, *kinds_arg;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*nOOC", &piece, &n_columns, &wanted_arg, &kinds_arg, &delimiter))
        return NULL;
    PyObject *result = NULL, *wanted = NULL, *kinds = NULL;
    int *slot = NULL;
    Py_ssize_t last_wanted = -1;
    Split s = {0};
    if (n_columns < 1 || delimiter < 1 || delimiter > 127 || delimiter == '\n' || delimiter == '\r') {
        PyErr_SetString(PyExc_ValueError, "bad column count or delimiter");
        goto done;
    }
    if (piece.len >= INT32_MAX) { /* int32 offsets: let pyarrow.csv read such a piece */
        result = Py_NewRef(Py_None);
        goto done;
    }
    wanted = PySequence_Fast(wanted_arg, "wanted must be a sequence of column indexes");
    kinds = wanted ? PySequence_Fast(kinds_arg, "kinds must be a sequence of kinds") : NULL;
    if (!kinds)
        goto done;
    s.n_wanted = (int)PySequence_Fast_GET_SIZE(wanted);
    if (PySequence_Fast_GET_SIZE(kinds) != s.n_wanted) {
        PyErr_SetString(PyExc_ValueError, "one kind per wanted column");
        goto done;
    }
    slot = malloc(n_columns * sizeof(int));
    s.starts = calloc((size_t)(s.n_wanted + 1) * BLOCK_ROWS, sizeof(Py_ssize_t));
    s.ends = calloc((size_t)(s.n_wanted + 1) * BLOCK_ROWS, sizeof(Py_ssize_t));
    s.columns = calloc(s.n_wanted + 1, sizeof(Column));
    if (!slot || !s.starts || !s.ends || !s.columns) {
        PyErr_NoMemory();
        goto done;
    }
    if (read_wanted(&s, wanted, kinds, n_columns, slot, &last_wanted))
        goto done;
    size_t lines;
    int has_cr, has_quote;
    Py_BEGIN_ALLOW_THREADS
    lines = count_lines((const char *)piece.buf, piece.len, &has_cr, &has_quote);
    Py_END_ALLOW_THREADS
    if (has_quote) { /* quoting changes the split: pyarrow.csv reads such a piece */
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (make_row_arrays(&s, lines))
        goto done;
    for (int k = 0; k < s.n_wanted; k++) { /* a guess at the text of one column; grown if short */
        s.columns[k].cap = (size_t)(piece.len / n_columns) * 4 + 64;
        if (!(s.columns[k].data = malloc(s.columns[k].cap))) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    scan(&s, (const char *)piece.buf, piece.len, n_columns, slot, last_wanted, (char)delimiter, has_cr);
    Py_END_ALLOW_THREADS
    if (s.no_memory)
        PyErr_NoMemory();
    else if (s.lone_cr)
        result = Py_NewRef(Py_None);
    else
        result = result_of(&s);
done:
    free_split(&s);
    free(slot);
    Py_XDECREF(wanted);
    Py_XDECREF(kinds);
    PyBuffer_Release(&piece);
    return result;
}

/* ------------------------------------------------------------------ addresses for Python */

/* bad_addresses(offsets, data, validity, offset, wide, out): for the `len(out)` rows of an
   Arrow string column from row `offset` (offsets int32, or int64 when `wide`, as
   large_string has them; validity a bitmap or None), out[row] = 1 where the value is
   present and not an address, else 0. `out` is a writable buffer of one byte a row
   (a numpy bool array). */
static PyObject *bad_addresses(PyObject *self, PyObject *args) {
    Py_buffer offsets, data = {0}, validity = {0}, out;
    PyObject *data_arg, *validity_arg;
    Py_ssize_t offset;
    int wide;
    if (!PyArg_ParseTuple(args, "y*OOnpw*", &offsets, &data_arg, &validity_arg, &offset, &wide, &out))
        return NULL;
    PyObject *result = NULL;
    if (data_arg != Py_None && PyObject_GetBuffer(data_arg, &data, PyBUF_SIMPLE))
        goto done;
    if (validity_arg != Py_None && PyObject_GetBuffer(validity_arg, &validity, PyBUF_SIMPLE))
        goto done;
    Py_ssize_t rows = out.len, width = wide ? 8 : 4;
    if (offset < 0 || offsets.len / width < offset + rows + 1 ||
        (validity.buf && validity.len < (offset + rows + 7) / 8)) {
        PyErr_SetString(PyExc_ValueError, "offsets or validity shorter than the rows");
        goto done;
    }
    const char *text = data.buf ? (const char *)data.buf : "";
    const uint8_t *valid = validity.buf;
    uint8_t *bad = out.buf;
    int broken = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        Py_ssize_t at = offset + r;
        int64_t start, end;
        if (wide) {
            start = ((const int64_t *)offsets.buf)[at];
            end = ((const int64_t *)offsets.buf)[at + 1];
        } else {
            start = ((const int32_t *)offsets.buf)[at];
            end = ((const int32_t *)offsets.buf)[at + 1];
        }
        if (valid && !(valid[at >> 3] >> (at & 7) & 1)) {
            bad[r] = 0;
            continue;
        }
        if (start < 0 || end < start || end > data.len) {
            broken = 1;
            break;
        }
        bad[r] = (uint8_t)ip_bad(text + start, (size_t)(end - start));
    }
    Py_END_ALLOW_THREADS
    if (broken)
        PyErr_SetString(PyExc_ValueError, "string offsets outside the data");
    else
        result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&out);
    if (data.obj)
        PyBuffer_Release(&data);
    if (validity.obj)
        PyBuffer_Release(&validity);
    return result;
}

/* address_ok(text: bytes) -> bool: the same check for one value. */
static PyObject *address_ok_py(PyObject *self, PyObject *arg) {
    Py_buffer text;
    if (PyObject_GetBuffer(arg, &text, PyBUF_SIMPLE))
        return NULL;
    int ok = address_ok((const char *)text.buf, (size_t)text.len);
    PyBuffer_Release(&text);
    return PyBool_FromLong(ok);
}

static PyMethodDef METHODS[] = {
    {"split", split, METH_VARARGS, "Split a piece of unquoted CSV text into the wanted columns."},
    {"bad_addresses", bad_addresses, METH_VARARGS, "Mark the rows of an Arrow string column that are not IP addresses."},
    {"address_ok", address_ok_py, METH_O, "True when the bytes are IPv4 or IPv6 address text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_fastcsv", "Field splitter for unquoted CSV pieces.", -1, METHODS};

PyMODINIT_FUNC PyInit__fastcsv(void) {
    for (const char *p = "0123456789abcdefABCDEF"; *p; p++)
        HEX_DIGIT[(unsigned char)*p] = 1;
    for (int i = 0; i < 256; i++)
        BITS_SET[i] = (uint8_t)((i & 1) + BITS_SET[i / 2]);
    PyObject *module = PyModule_Create(&MODULE);
    if (module && (PyModule_AddIntConstant(module, "TEXT", KIND_TEXT) || PyModule_AddIntConstant(module, "INT", KIND_INT) ||
                   PyModule_AddIntConstant(module, "TIME", KIND_TIME) || PyModule_AddIntConstant(module, "IP", KIND_IP) ||
                   PyModule_AddIntConstant(module, "CODE", KIND_CODE))) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
