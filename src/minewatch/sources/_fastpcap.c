/*
 * _fastpcap: a compiled pcap/pcapng reader that aggregates packets into
 * bidirectional flows (the minewatch FLOWS table, less source_file/app_protocol).
 *
 * Design:
 *  - the file is read through one growable buffer (read(2)), so memory does not
 *    depend on the file size;
 *  - every length found in the file is bounds-checked before use;
 *  - flows live in a slab array, found through an open-addressing hash table
 *    (linear probing, backward-shift deletion) and kept in an LRU list ordered by
 *    last packet, so idle flows are evicted from the list head in O(1) each;
 *  - the packet loop allocates nothing except when a flow is created or a side's
 *    payload head grows; it runs without the GIL;
 *  - finished flows are appended to column buffers, handed to Python as bytes
 *    objects that pyarrow wraps without per-row work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

#define MAX_RECORD (64u << 20) /* larger records/blocks are treated as corruption */
#define READ_CHUNK (4u << 20)
#define MAX_TUNNEL_DEPTH 4
#define MAX_IFACES 256

/* ------------------------------------------------------------------ skip reasons */

enum {
    SKIP_NOT_IP,
    SKIP_UNSUPPORTED_LINK,
    SKIP_TRUNCATED,
    SKIP_NON_FIRST_FRAGMENT,
    SKIP_BAD_IP_HEADER,
    SKIP_UNKNOWN_INTERFACE,
    SKIP_TUNNEL_TOO_DEEP,
    SKIP_N
};
static const char *SKIP_NAMES[SKIP_N] = {
    "not_ip", "unsupported_link_type", "truncated_header", "non_first_fragment",
    "bad_ip_header", "unknown_interface", "tunnel_too_deep",
};
#define OK (-1)

/* ------------------------------------------------------------------ byte helpers */

static inline u16 be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }
static inline u32 be32(const u8 *p) {
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}
static inline u16 le16(const u8 *p) { return (u16)((p[1] << 8) | p[0]); }
static inline u32 le32(const u8 *p) {
    return ((u32)p[3] << 24) | ((u32)p[2] << 16) | ((u32)p[1] << 8) | p[0];
}

/* ------------------------------------------------------------------ growable buffer */

typedef struct {
    char *d;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *d = realloc(b->d, cap);
    if (!d) return -1;
    b->d = d;
    b->cap = cap;
    return 0;
}
static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->d + b->len, src, n);
    b->len += n;
    return 0;
}
static void buf_free(Buf *b) {
    free(b->d);
    b->d = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ output columns */

enum {
    C_TS_START, C_TS_END, C_FLOW_REF,
    C_SRC_IP_OFF, C_SRC_IP, C_DST_IP_OFF, C_DST_IP,
    C_SRC_PORT, C_DST_PORT, C_IP_PROTO, C_VLAN,
    C_SRC_PACKETS, C_DST_PACKETS, C_SRC_BYTES, C_DST_BYTES,
    C_SRC_PL_PACKETS, C_DST_PL_PACKETS, C_SRC_PL_BYTES, C_DST_PL_BYTES,
    C_SRC_FLAGS, C_DST_FLAGS,
    C_SRC_HEAD_OFF, C_SRC_HEAD, C_DST_HEAD_OFF, C_DST_HEAD,
    C_IAT_MEAN, C_IAT_STD, C_IAT_N,
    /* application messages per side (src, dst), see side_count_message */
    C_SRC_MSGS, C_DST_MSGS, C_SRC_MSZ_MEAN, C_DST_MSZ_MEAN, C_SRC_MSZ_STD, C_DST_MSZ_STD,
    C_SRC_MIT_MEAN, C_DST_MIT_MEAN, C_SRC_MIT_STD, C_DST_MIT_STD,
    C_N
};
static const char *COL_NAMES[C_N] = {
    "ts_start", "ts_end", "flow_ref",
    "src_ip_offsets", "src_ip_data", "dst_ip_offsets", "dst_ip_data",
    "src_port", "dst_port", "ip_proto", "vlan_id",
    "src_packets", "dst_packets", "src_bytes", "dst_bytes",
    "src_payload_packets", "dst_payload_packets", "src_payload_bytes", "dst_payload_bytes",
    "src_tcp_flags", "dst_tcp_flags",
    "src_head_offsets", "src_head_data", "dst_head_offsets", "dst_head_data",
    "src_iat_mean_ms", "src_iat_std_ms", "src_iat_count",
    "src_msgs", "dst_msgs", "src_msg_size_mean", "dst_msg_size_mean", "src_msg_size_std", "dst_msg_size_std",
    "src_msg_iat_mean_ms", "dst_msg_iat_mean_ms", "src_msg_iat_std_ms", "dst_msg_iat_std_ms",
};

/* ------------------------------------------------------------------ flows */

typedef struct {
    u8 ip_a[16], ip_b[16]; /* normalised: (ip_a, port_a) <= (ip_b, port_b) */
    u16 port_a, port_b;
    u16 vlan; /* 0xFFFF = none */
    u8 proto, family;
} Key; /* 40 bytes, no padding */

typedef struct {
    i64 packets, bytes, pl_packets, pl_bytes;
    u8 *head;
    u32 head_len, head_cap, next_seq;
    u16 head_pkts;
    u8 flags, has_seq;
    /* application messages: payload segments of this side less than MSG_GAP_NS apart */
    i64 msgs, msg_start, last_pl_ts, msg_len; /* count; ns times; bytes of the open message */
    i64 mit_n;                                /* intervals between message starts */
    double msz_mean, msz_m2, mit_mean, mit_m2; /* Welford: sizes (bytes), intervals (ms) */
} Side;

#define MSG_GAP_NS 5000000 /* 5 ms: segments of one write leave back to back, replies take an RTT */

static inline void welford(double *mean, double *m2, double n, double x) {
    double d = x - *mean;
    *mean += d / n;
    *m2 += d * (x - *mean);
}

/* Count one payload segment into the side's application messages. A message is a
 * burst of segments each less than MSG_GAP_NS after the previous one (one stratum
 * line or TLS record split by the MSS arrives as back-to-back segments). */
static inline void side_count_message(Side *s, i64 ts, u32 len) {
    if (s->msgs == 0 || ts - s->last_pl_ts > MSG_GAP_NS) {
        if (s->msgs) {
            welford(&s->msz_mean, &s->msz_m2, (double)s->msgs, (double)s->msg_len);
            i64 dt = ts - s->msg_start;
            s->mit_n++;
            welford(&s->mit_mean, &s->mit_m2, (double)s->mit_n, (double)(dt > 0 ? dt : 0) / 1e6);
        }
        s->msgs++;
        s->msg_start = ts;
        s->msg_len = 0;
    }
    s->msg_len += len;
    if (ts > s->last_pl_ts || s->msgs == 1) s->last_pl_ts = ts;
}

/* Message statistics of a side at export: the open message is counted as finished. */
static void side_message_stats(const Side *s, double out[4]) {
    double mean = s->msz_mean, m2 = s->msz_m2;
    if (s->msgs) welford(&mean, &m2, (double)s->msgs, (double)s->msg_len);
    out[0] = s->msgs ? mean : NAN;
    out[1] = s->msgs ? sqrt(m2 / (double)s->msgs) : NAN;
    out[2] = s->mit_n ? s->mit_mean : NAN;
    out[3] = s->mit_n ? sqrt(s->mit_m2 / (double)s->mit_n) : NAN;
}

typedef struct {
    Key key;
    u32 hash;
    i64 prev, next; /* LRU list, -1 terminated */
    i64 ts_first, ts_last, last_src_payload_ts; /* ns */
    i64 ref;
    double iat_mean, iat_m2;
    i64 iat_n;
    u8 src_is_a;
    Side side[2]; /* 0 = src, 1 = dst */
} Flow;

typedef struct {
    u32 hash;
    u32 idx; /* flow index + 1; 0 = empty */
} Slot;

/* One decoded packet, ready for flow accounting. */
typedef struct {
    u8 src[16], dst[16];
    u8 family, proto, tcp_flags, has_ports;
    u16 sport, dport;
    int vlan; /* -1 = none */
    u32 ip_len;        /* IP bytes as declared on the wire */
    u32 payload_len;   /* L4 payload bytes as declared */
    u32 payload_cap;   /* of which captured */
    const u8 *payload;
    u32 seq;
} Pkt;

/* ------------------------------------------------------------------ reader state */

typedef struct {
    u16 linktype;
    int supported;
    u32 snaplen;
    int tsres_pow2; /* 1: units of 2^-v s, 0: 10^-v s */
    int tsres_v;
    i64 ts_offset_s;
} Iface;

typedef struct {
    PyObject_HEAD
    int fd;
    int is_ng, swapped, nano;
    u32 pcap_linktype, pcap_snaplen;
    /* input buffer */
    u8 *in;
    size_t in_pos, in_len, in_cap;
    u64 in_base; /* file offset of in[0] */
    u64 bytes_total;
    int eof_file;
    int finished; /* no more packets: flushing */
    int done;     /* everything handed out */
    char error[256];
    /* pcapng section */
    int ng_swapped;
    Iface ifaces[MAX_IFACES];
    int n_ifaces;
    i64 last_ts;
    /* settings */
    u32 payload_bytes, payload_packets;
    i64 idle_ns, active_ns;
    /* counters */
    i64 packets_read;
    i64 skipped[SKIP_N];
    i64 flows_created, flows_out;
    /* flow table */
    Flow *flows;
    i64 n_flows_cap, n_used; /* slab size, slots ever used */
    i64 free_head;          /* free list via .next */
    i64 active;
    Slot *table;
    u64 table_mask;
    i64 lru_head, lru_tail;
    i64 now;
    int nomem;
    /* output */
    Buf out[C_N];
    i64 out_rows;
} Reader;

static PyObject *FormatError, *UnsupportedLinkType;

/* ------------------------------------------------------------------ input buffer */

/* Make n bytes available at in_pos; returns pointer or NULL at end of file. */
static const u8 *in_need(Reader *r, size_t n) {
    if (r->in_len - r->in_pos >= n) return r->in + r->in_pos;
    if (r->in_pos) {
        memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
        r->in_base += r->in_pos;
        r->in_len -= r->in_pos;
        r->in_pos = 0;
    }
    if (n > r->in_cap) {
        size_t cap = r->in_cap;
        while (cap < n) cap *= 2;
        u8 *p = realloc(r->in, cap);
        if (!p) {
            r->nomem = 1;
            return NULL;
        }
        r->in = p;
        r->in_cap = cap;
    }
    while (r->in_len < n && !r->eof_file) {
        ssize_t got = read(r->fd, r->in + r->in_len, r->in_cap - r->in_len);
        if (got < 0) {
            if (errno == EINTR) continue;
            snprintf(r->error, sizeof r->error, "read error at byte %llu: %s",
                     (unsigned long long)(r->in_base + r->in_len), strerror(errno));
            r->eof_file = 1;
            return NULL;
        }
        if (got == 0) r->eof_file = 1;
        r->in_len += (size_t)got;
    }
    return r->in_len >= n ? r->in : NULL;
}

static inline u64 in_offset(Reader *r) { return r->in_base + r->in_pos; }

static inline u16 f16(int swapped, const u8 *p) { return swapped ? be16(p) : le16(p); }
static inline u32 f32(int swapped, const u8 *p) { return swapped ? be32(p) : le32(p); }
/* "swapped" here means: file integers are big-endian (we only run on little-endian
 * or big-endian hosts alike because we always decode explicitly). */

/* ------------------------------------------------------------------ hashing */

static inline u64 mix64(u64 x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}
static inline u32 key_hash(const Key *k) {
    u64 w[5];
    memcpy(w, k, sizeof w);
    u64 h = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 5; i++) h = mix64(h ^ w[i]) + 0x9e3779b97f4a7c15ULL * (u64)(i + 1);
    return (u32)(h ^ (h >> 32));
}

static int table_init(Reader *r, u64 cap) {
    Slot *t = calloc(cap, sizeof(Slot));
    if (!t) return -1;
    free(r->table);
    r->table = t;
    r->table_mask = cap - 1;
    return 0;
}

static void table_insert_idx(Reader *r, u32 hash, i64 idx) {
    u64 i = hash & r->table_mask;
    while (r->table[i].idx) i = (i + 1) & r->table_mask;
    r->table[i].hash = hash;
    r->table[i].idx = (u32)(idx + 1);
}

static int table_grow(Reader *r) {
    Slot *old = r->table;
    u64 old_cap = r->table_mask + 1;
    Slot *t = calloc(old_cap * 2, sizeof(Slot));
    if (!t) return -1;
    r->table = t;
    r->table_mask = old_cap * 2 - 1;
    for (u64 i = 0; i < old_cap; i++)
        if (old[i].idx) table_insert_idx(r, old[i].hash, old[i].idx - 1);
    free(old);
    return 0;
}

static i64 table_find(Reader *r, const Key *k, u32 hash) {
    u64 i = hash & r->table_mask;
    while (r->table[i].idx) {
        if (r->table[i].hash == hash) {
            i64 idx = r->table[i].idx - 1;
            if (memcmp(&r->flows[idx].key, k, sizeof(Key)) == 0) return idx;
        }
        i = (i + 1) & r->table_mask;
    }
    return -1;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void table_remove(Reader *r, u32 hash, i64 idx) {
    u64 mask = r->table_mask;
    u64 i = hash & mask;
    while (r->table[i].idx != (u32)(idx + 1)) i = (i + 1) & mask;
    u64 j = i;
    for (;;) {
        r->table[i].idx = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!r->table[j].idx) return;
            u64 home = r->table[j].hash & mask;
            /* move j into the hole at i unless its home lies cyclically in (i, j] */
            int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        r->table[i] = r->table[j];
        i = j;
    }
}

/* ------------------------------------------------------------------ LRU */

static inline void lru_unlink(Reader *r, i64 idx) {
    Flow *f = &r->flows[idx];
    if (f->prev >= 0) r->flows[f->prev].next = f->next; else r->lru_head = f->next;
    if (f->next >= 0) r->flows[f->next].prev = f->prev; else r->lru_tail = f->prev;
    f->prev = f->next = -1;
}
static inline void lru_push_tail(Reader *r, i64 idx) {
    Flow *f = &r->flows[idx];
    f->prev = r->lru_tail;
    f->next = -1;
    if (r->lru_tail >= 0) r->flows[r->lru_tail].next = idx; else r->lru_head = idx;
    r->lru_tail = idx;
}

/* ------------------------------------------------------------------ export */

static int put_ip(Buf *off, Buf *data, const u8 *ip, int family) {
    char s[INET6_ADDRSTRLEN];
    if (family == 4) {
        snprintf(s, sizeof s, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
    } else if (!inet_ntop(AF_INET6, ip, s, sizeof s)) {
        strcpy(s, "::");
    }
    size_t n = strlen(s);
    if (buf_put(data, s, n)) return -1;
    int32_t end = (int32_t)data->len;
    return buf_put(off, &end, 4);
}

static int put_head(Buf *off, Buf *data, const Side *s) {
    if (s->head_len && buf_put(data, s->head, s->head_len)) return -1;
    int32_t end = (int32_t)data->len;
    return buf_put(off, &end, 4);
}

static inline i64 ns_to_us(i64 ns) { return ns >= 0 ? ns / 1000 : -((-ns + 999) / 1000); }

/* Append the flow as one output row, then free it. */
static void flow_export(Reader *r, i64 idx) {
    Flow *f = &r->flows[idx];
    Buf *o = r->out;
    const u8 *sip = f->src_is_a ? f->key.ip_a : f->key.ip_b;
    const u8 *dip = f->src_is_a ? f->key.ip_b : f->key.ip_a;
    int32_t sport = f->src_is_a ? f->key.port_a : f->key.port_b;
    int32_t dport = f->src_is_a ? f->key.port_b : f->key.port_a;
    i64 v;
    int err = 0;
    v = ns_to_us(f->ts_first); err |= buf_put(&o[C_TS_START], &v, 8);
    v = ns_to_us(f->ts_last); err |= buf_put(&o[C_TS_END], &v, 8);
    err |= buf_put(&o[C_FLOW_REF], &f->ref, 8);
    err |= put_ip(&o[C_SRC_IP_OFF], &o[C_SRC_IP], sip, f->key.family);
    err |= put_ip(&o[C_DST_IP_OFF], &o[C_DST_IP], dip, f->key.family);
    err |= buf_put(&o[C_SRC_PORT], &sport, 4);
    err |= buf_put(&o[C_DST_PORT], &dport, 4);
    int16_t proto = f->key.proto; err |= buf_put(&o[C_IP_PROTO], &proto, 2);
    int32_t vlan = f->key.vlan == 0xFFFF ? -1 : f->key.vlan; err |= buf_put(&o[C_VLAN], &vlan, 4);
    err |= buf_put(&o[C_SRC_PACKETS], &f->side[0].packets, 8);
    err |= buf_put(&o[C_DST_PACKETS], &f->side[1].packets, 8);
    err |= buf_put(&o[C_SRC_BYTES], &f->side[0].bytes, 8);
    err |= buf_put(&o[C_DST_BYTES], &f->side[1].bytes, 8);
    err |= buf_put(&o[C_SRC_PL_PACKETS], &f->side[0].pl_packets, 8);
    err |= buf_put(&o[C_DST_PL_PACKETS], &f->side[1].pl_packets, 8);
    err |= buf_put(&o[C_SRC_PL_BYTES], &f->side[0].pl_bytes, 8);
    err |= buf_put(&o[C_DST_PL_BYTES], &f->side[1].pl_bytes, 8);
    err |= buf_put(&o[C_SRC_FLAGS], &f->side[0].flags, 1);
    err |= buf_put(&o[C_DST_FLAGS], &f->side[1].flags, 1);
    err |= put_head(&o[C_SRC_HEAD_OFF], &o[C_SRC_HEAD], &f->side[0]);
    err |= put_head(&o[C_DST_HEAD_OFF], &o[C_DST_HEAD], &f->side[1]);
    double mean = f->iat_n ? f->iat_mean : NAN;
    double sd = f->iat_n ? sqrt(f->iat_m2 / (double)f->iat_n) : NAN;
    err |= buf_put(&o[C_IAT_MEAN], &mean, 8);
    err |= buf_put(&o[C_IAT_STD], &sd, 8);
    err |= buf_put(&o[C_IAT_N], &f->iat_n, 8);
    for (int k = 0; k < 2; k++) {
        double m[4];
        side_message_stats(&f->side[k], m);
        err |= buf_put(&o[C_SRC_MSGS + k], &f->side[k].msgs, 8);
        err |= buf_put(&o[C_SRC_MSZ_MEAN + k], &m[0], 8);
        err |= buf_put(&o[C_SRC_MSZ_STD + k], &m[1], 8);
        err |= buf_put(&o[C_SRC_MIT_MEAN + k], &m[2], 8);
        err |= buf_put(&o[C_SRC_MIT_STD + k], &m[3], 8);
    }
    if (err) r->nomem = 1;
    r->out_rows++;
    r->flows_out++;

    free(f->side[0].head);
    free(f->side[1].head);
    f->side[0].head = f->side[1].head = NULL;
    table_remove(r, f->hash, idx);
    lru_unlink(r, idx);
    f->next = r->free_head;
    r->free_head = idx;
    r->active--;
}

static void out_reset(Reader *r) {
    for (int c = 0; c < C_N; c++) r->out[c].len = 0;
    int32_t zero = 0;
    buf_put(&r->out[C_SRC_IP_OFF], &zero, 4);
    buf_put(&r->out[C_DST_IP_OFF], &zero, 4);
    buf_put(&r->out[C_SRC_HEAD_OFF], &zero, 4);
    buf_put(&r->out[C_DST_HEAD_OFF], &zero, 4);
    r->out_rows = 0;
}

/* ------------------------------------------------------------------ flow accounting */

static i64 flow_new(Reader *r, const Key *k, u32 hash) {
    i64 idx;
    if (r->free_head >= 0) {
        idx = r->free_head;
        r->free_head = r->flows[idx].next;
    } else {
        if (r->n_used == r->n_flows_cap) {
            i64 cap = r->n_flows_cap ? r->n_flows_cap * 2 : 4096;
            Flow *p = realloc(r->flows, (size_t)cap * sizeof(Flow));
            if (!p) return -1;
            r->flows = p;
            r->n_flows_cap = cap;
        }
        idx = r->n_used++;
    }
    if ((u64)(r->active + 1) * 2 > r->table_mask + 1 && table_grow(r)) return -1;
    Flow *f = &r->flows[idx];
    memset(f, 0, sizeof *f);
    f->key = *k;
    f->hash = hash;
    f->ref = r->flows_created++;
    table_insert_idx(r, hash, idx);
    lru_push_tail(r, idx);
    r->active++;
    return idx;
}

static void side_take_payload(Reader *r, Side *s, const Pkt *p) {
    if (s->head_pkts >= r->payload_packets || s->head_len >= r->payload_bytes) return;
    const u8 *data = p->payload;
    u32 n = p->payload_cap;
    if (p->proto == 6) {
        if (s->has_seq) {
            int32_t diff = (int32_t)(p->seq - s->next_seq);
            if ((i64)diff + (i64)p->payload_len <= 0) return; /* retransmission */
            if (diff < 0) {
                u32 skip = (u32)(-diff);
                if (skip >= n) return;
                data += skip;
                n -= skip;
            }
        }
        u32 end = p->seq + p->payload_len;
        if (!s->has_seq || (int32_t)(end - s->next_seq) > 0) s->next_seq = end;
        s->has_seq = 1;
    }
    s->head_pkts++;
    u32 room = r->payload_bytes - s->head_len;
    if (n > room) n = room;
    if (!n) return;
    if (s->head_len + n > s->head_cap) {
        u32 cap = s->head_cap ? s->head_cap : 256;
        while (cap < s->head_len + n) cap *= 2;
        if (cap > r->payload_bytes) cap = r->payload_bytes;
        u8 *h = realloc(s->head, cap);
        if (!h) {
            r->nomem = 1;
            return;
        }
        s->head = h;
        s->head_cap = cap;
    }
    memcpy(s->head + s->head_len, data, n);
    s->head_len += n;
}

static void account(Reader *r, const Pkt *p, i64 ts) {
    Key k;
    int a_is_src;
    int c = memcmp(p->src, p->dst, 16);
    if (c < 0 || (c == 0 && p->sport <= p->dport)) {
        memcpy(k.ip_a, p->src, 16); memcpy(k.ip_b, p->dst, 16);
        k.port_a = p->sport; k.port_b = p->dport;
        a_is_src = 1;
    } else {
        memcpy(k.ip_a, p->dst, 16); memcpy(k.ip_b, p->src, 16);
        k.port_a = p->dport; k.port_b = p->sport;
        a_is_src = 0;
    }
    k.vlan = p->vlan < 0 ? 0xFFFF : (u16)p->vlan;
    k.proto = p->proto;
    k.family = p->family;
    u32 h = key_hash(&k);
    i64 idx = table_find(r, &k, h);
    if (idx >= 0 && (ts - r->flows[idx].ts_first > r->active_ns ||
                     ts - r->flows[idx].ts_last > r->idle_ns)) {
        flow_export(r, idx); /* timed out: close it, a new flow continues */
        idx = -1;
    }
    Flow *f;
    if (idx < 0) {
        idx = flow_new(r, &k, h);
        if (idx < 0) {
            r->nomem = 1;
            return;
        }
        f = &r->flows[idx];
        f->ts_first = f->ts_last = ts;
        int sender_is_src = !(p->proto == 6 && (p->tcp_flags & 0x12) == 0x12);
        f->src_is_a = sender_is_src ? (u8)a_is_src : (u8)!a_is_src;
    } else {
        f = &r->flows[idx];
        if (ts > f->ts_last) f->ts_last = ts;
        if (ts < f->ts_first) f->ts_first = ts;
        if (r->lru_tail != idx) {
            lru_unlink(r, idx);
            lru_push_tail(r, idx);
        }
    }
    int from_src = (a_is_src == f->src_is_a);
    Side *s = &f->side[from_src ? 0 : 1];
    s->packets++;
    s->bytes += p->ip_len;
    s->flags |= p->tcp_flags;
    if (p->proto == 6 && (p->tcp_flags & 0x02) && !p->payload_len) {
        s->next_seq = p->seq + 1; /* SYN uses one sequence number */
        s->has_seq = 1;
    }
    if (p->payload_len) {
        s->pl_packets++;
        s->pl_bytes += p->payload_len;
        side_count_message(s, ts, p->payload_len);
        if (from_src) {
            if (s->pl_packets > 1) {
                double x = (double)(ts - f->last_src_payload_ts) / 1e6;
                f->iat_n++;
                double d = x - f->iat_mean;
                f->iat_mean += d / (double)f->iat_n;
                f->iat_m2 += d * (x - f->iat_mean);
            }
            f->last_src_payload_ts = ts;
        }
        side_take_payload(r, s, p);
    }
}

/* Evict idle flows from the LRU head (bounded by max_rows in this call). */
static void expire_idle(Reader *r, i64 max_rows) {
    while (r->lru_head >= 0 && r->out_rows < max_rows) {
        Flow *f = &r->flows[r->lru_head];
        if (r->now - f->ts_last <= r->idle_ns) break;
        flow_export(r, r->lru_head);
    }
}

/* ------------------------------------------------------------------ packet decoding */

static int decode_ip(Reader *r, const u8 *p, u32 len, Pkt *k, int depth);
static int decode_ethertype(Reader *r, u16 type, const u8 *p, u32 len, Pkt *k, int depth);

static int decode_ether(Reader *r, const u8 *p, u32 len, Pkt *k, int depth) {
    if (len < 14) return SKIP_TRUNCATED;
    u16 type = be16(p + 12);
    p += 14;
    len -= 14;
    if (type < 0x0600) { /* 802.3 length: only LLC/SNAP carries IP */
        if (len < 8 || p[0] != 0xAA || p[1] != 0xAA || p[2] != 0x03) return SKIP_NOT_IP;
        type = be16(p + 6);
        p += 8;
        len -= 8;
    }
    return decode_ethertype(r, type, p, len, k, depth);
}

static int decode_by_version(Reader *r, const u8 *p, u32 len, Pkt *k, int depth) {
    if (len < 1) return SKIP_TRUNCATED;
    u8 v = p[0] >> 4;
    if (v == 4 || v == 6) return decode_ip(r, p, len, k, depth);
    return SKIP_NOT_IP;
}

static int decode_ppp_proto(Reader *r, u16 proto, const u8 *p, u32 len, Pkt *k, int depth) {
    if (proto == 0x0021) return decode_ip(r, p, len, k, depth);
    if (proto == 0x0057) return decode_ip(r, p, len, k, depth);
    return SKIP_NOT_IP;
}

/* Cisco HDLC: address (0x0F unicast, 0x8F broadcast), control, ethertype */
static int decode_chdlc(Reader *r, const u8 *p, u32 len, Pkt *k, int depth) {
    if (len < 4) return SKIP_TRUNCATED;
    return decode_ethertype(r, be16(p + 2), p + 4, len - 4, k, depth);
}

static int decode_ppp(Reader *r, const u8 *p, u32 len, Pkt *k, int depth) {
    if (len >= 2 && (p[0] == 0x0F || p[0] == 0x8F) && p[1] == 0x00)
        return decode_chdlc(r, p, len, k, depth); /* Cisco HDLC framing labelled PPP */
    if (len >= 2 && p[0] == 0xFF && p[1] == 0x03) { p += 2; len -= 2; }
    if (len < 1) return SKIP_TRUNCATED;
    u16 proto;
    if (p[0] & 1) { proto = p[0]; p += 1; len -= 1; } /* compressed protocol field */
    else {
        if (len < 2) return SKIP_TRUNCATED;
        proto = be16(p); p += 2; len -= 2;
    }
    return decode_ppp_proto(r, proto, p, len, k, depth);
}

static int decode_ethertype(Reader *r, u16 type, const u8 *p, u32 len, Pkt *k, int depth) {
    for (int guard = 0; guard < 16; guard++) {
        switch (type) {
        case 0x0800:
        case 0x86DD:
            return decode_ip(r, p, len, k, depth);
        case 0x8100: case 0x88A8: case 0x9100: case 0x9200:
            if (len < 4) return SKIP_TRUNCATED;
            if (k->vlan < 0) k->vlan = be16(p) & 0x0FFF;
            type = be16(p + 2);
            p += 4; len -= 4;
            continue;
        case 0x8847: case 0x8848: {
            for (;;) {
                if (len < 4) return SKIP_TRUNCATED;
                int bottom = p[2] & 1;
                p += 4; len -= 4;
                if (bottom) break;
            }
            return decode_by_version(r, p, len, k, depth);
        }
        case 0x8864:
            if (len < 8) return SKIP_TRUNCATED;
            return decode_ppp_proto(r, be16(p + 6), p + 8, len - 8, k, depth);
        default:
            return SKIP_NOT_IP;
        }
    }
    return SKIP_NOT_IP;
}

static int linktype_supported(u32 lt) {
    switch (lt) {
    case 0: case 1: case 9: case 12: case 14: case 101: case 104: case 108: case 113:
    case 228: case 229: case 276:
        return 1;
    default:
        return 0;
    }
}

static int decode_link(Reader *r, u32 lt, const u8 *p, u32 len, Pkt *k) {
    switch (lt) {
    case 1:
        return decode_ether(r, p, len, k, 0);
    case 12: case 14: case 101: case 228: case 229:
        return decode_by_version(r, p, len, k, 0);
    case 0: case 108: /* 4-byte address family, byte order varies: go by IP version */
        if (len < 4) return SKIP_TRUNCATED;
        return decode_by_version(r, p + 4, len - 4, k, 0);
    case 113:
        if (len < 16) return SKIP_TRUNCATED;
        return decode_ethertype(r, be16(p + 14), p + 16, len - 16, k, 0);
    case 276:
        if (len < 20) return SKIP_TRUNCATED;
        return decode_ethertype(r, be16(p), p + 20, len - 20, k, 0);
    case 9:
        return decode_ppp(r, p, len, k, 0);
    case 104:
        return decode_chdlc(r, p, len, k, 0);
    default:
        return SKIP_UNSUPPORTED_LINK;
    }
}

/* Try an encapsulated packet; on success it replaces the outer one. */
static int try_inner(Reader *r, int kind, u16 type, const u8 *p, u32 len, Pkt *k, int depth,
                     int *decided) {
    *decided = 0;
    if (depth + 1 > MAX_TUNNEL_DEPTH) return SKIP_TUNNEL_TOO_DEEP;
    Pkt inner;
    memset(&inner, 0, sizeof inner);
    inner.vlan = k->vlan;
    int rc;
    if (kind == 0) rc = decode_ip(r, p, len, &inner, depth + 1);
    else if (kind == 1) rc = decode_ether(r, p, len, &inner, depth + 1);
    else rc = decode_ethertype(r, type, p, len, &inner, depth + 1);
    if (rc == OK || rc == SKIP_NON_FIRST_FRAGMENT) {
        *k = inner;
        *decided = 1;
    }
    return rc;
}

static int decode_gre(Reader *r, const u8 *p, u32 len, Pkt *k, int depth, int *decided) {
    *decided = 0;
    if (len < 4) return OK;
    u16 fl = be16(p), type = be16(p + 2);
    int ver = fl & 7;
    u32 hl = 4;
    if (ver == 0) {
        if (fl & 0x8000) hl += 4;
        if (fl & 0x2000) hl += 4;
        if (fl & 0x1000) hl += 4;
    } else if (ver == 1) { /* PPTP enhanced GRE: key always, seq and ack optional */
        hl += 4;
        if (fl & 0x1000) hl += 4;
        if (fl & 0x0080) hl += 4;
    } else return OK;
    if (len < hl) return OK;
    p += hl; len -= hl;
    int rc;
    if (type == 0x6558) rc = try_inner(r, 1, 0, p, len, k, depth, decided);
    else if (type == 0x880B) {
        if (depth + 1 > MAX_TUNNEL_DEPTH) return OK;
        Pkt inner; memset(&inner, 0, sizeof inner); inner.vlan = k->vlan;
        rc = decode_ppp(r, p, len, &inner, depth + 1);
        if (rc == OK || rc == SKIP_NON_FIRST_FRAGMENT) { *k = inner; *decided = 1; }
    } else if (type == 0x0800 || type == 0x86DD || type == 0x8847 || type == 0x8100)
        rc = try_inner(r, 2, type, p, len, k, depth, decided);
    else return OK;
    return *decided ? rc : OK;
}

static int decode_ip(Reader *r, const u8 *p, u32 len, Pkt *k, int depth) {
    if (len < 1) return SKIP_TRUNCATED;
    u8 version = p[0] >> 4;
    u32 ip_len, hl;
    u8 proto;
    int frag_later = 0;
    if (version == 4) {
        if (len < 20) return SKIP_TRUNCATED;
        hl = (u32)(p[0] & 15) * 4;
        if (hl < 20) return SKIP_BAD_IP_HEADER;
        if (len < hl) return SKIP_TRUNCATED;
        ip_len = be16(p + 2);
        if (ip_len == 0) ip_len = len; /* segmentation offload */
        if (ip_len < hl) return SKIP_BAD_IP_HEADER;
        u16 frag = be16(p + 6);
        if (frag & 0x1FFF) frag_later = 1;
        proto = p[9];
        k->family = 4;
        memset(k->src, 0, 16); memset(k->dst, 0, 16);
        memcpy(k->src, p + 12, 4);
        memcpy(k->dst, p + 16, 4);
    } else if (version == 6) {
        if (len < 40) return SKIP_TRUNCATED;
        ip_len = 40 + be16(p + 4);
        if (ip_len == 40 && len > 40) ip_len = len; /* jumbogram or offload */
        proto = p[6];
        k->family = 6;
        memcpy(k->src, p + 8, 16);
        memcpy(k->dst, p + 24, 16);
        hl = 40;
        for (int guard = 0; guard < 16; guard++) {
            if (proto == 0 || proto == 43 || proto == 60 || proto == 135 || proto == 139 ||
                proto == 140) {
                if (len < hl + 8) return SKIP_TRUNCATED;
                u8 next = p[hl];
                hl += ((u32)p[hl + 1] + 1) * 8;
                proto = next;
            } else if (proto == 44) {
                if (len < hl + 8) return SKIP_TRUNCATED;
                u8 next = p[hl];
                if (be16(p + hl + 2) & 0xFFF8) frag_later = 1;
                hl += 8;
                proto = next;
            } else if (proto == 51) {
                if (len < hl + 8) return SKIP_TRUNCATED;
                u8 next = p[hl];
                hl += ((u32)p[hl + 1] + 2) * 4;
                proto = next;
            } else break;
        }
        if (len < hl) return SKIP_TRUNCATED;
        if (ip_len < hl) ip_len = hl;
    } else {
        return depth ? SKIP_NOT_IP : SKIP_BAD_IP_HEADER;
    }
    if (frag_later) return SKIP_NON_FIRST_FRAGMENT;

    k->proto = proto;
    k->ip_len = ip_len;
    k->has_ports = 0;
    k->sport = k->dport = 0;
    k->tcp_flags = 0;
    k->seq = 0;
    const u8 *l4 = p + hl;
    u32 cap = len - hl;                /* captured bytes after the IP header */
    u32 wire = ip_len - hl;            /* declared bytes after the IP header */
    if (cap > wire) cap = wire;        /* drop link-layer padding */
    k->payload = l4;
    k->payload_len = wire;
    k->payload_cap = cap;

    if (proto == 6) {
        if (cap < 20) return SKIP_TRUNCATED;
        u32 thl = (u32)(l4[12] >> 4) * 4;
        if (thl < 20) thl = 20;
        if (cap < thl) return SKIP_TRUNCATED;
        k->has_ports = 1;
        k->sport = be16(l4); k->dport = be16(l4 + 2);
        k->seq = be32(l4 + 4);
        k->tcp_flags = l4[13];
        k->payload = l4 + thl;
        k->payload_len = wire > thl ? wire - thl : 0;
        k->payload_cap = cap - thl;
    } else if (proto == 17 || proto == 136) {
        if (cap < 8) return SKIP_TRUNCATED;
        k->has_ports = 1;
        k->sport = be16(l4); k->dport = be16(l4 + 2);
        u32 ulen = be16(l4 + 4);
        u32 plen = wire - 8;
        if (ulen >= 8 && ulen - 8 < plen) plen = ulen - 8;
        k->payload = l4 + 8;
        k->payload_len = wire >= 8 ? plen : 0;
        k->payload_cap = cap - 8 < k->payload_len ? cap - 8 : k->payload_len;
        if (proto == 17) {
            const u8 *q = k->payload;
            u32 qn = k->payload_cap;
            int decided = 0, rc = OK;
            if (k->dport == 4789 && qn >= 8 && (q[0] & 0x08)) {
                rc = try_inner(r, 1, 0, q + 8, qn - 8, k, depth, &decided);
            } else if ((k->dport == 2152 || k->sport == 2152) && qn >= 8 && (q[0] >> 5) == 1 &&
                       (q[0] & 0x10) && q[1] == 0xFF) {
                u32 gl = 8;
                if (q[0] & 0x07) {
                    gl = 12;
                    if (qn < 12) goto done_udp;
                    u8 next = (q[0] & 0x04) ? q[11] : 0;
                    while (next) {
                        if (qn < gl + 1) goto done_udp;
                        u32 el = (u32)q[gl] * 4;
                        if (!el || qn < gl + el) goto done_udp;
                        next = q[gl + el - 1];
                        gl += el;
                    }
                }
                if (qn > gl && ((q[gl] >> 4) == 4 || (q[gl] >> 4) == 6))
                    rc = try_inner(r, 0, 0, q + gl, qn - gl, k, depth, &decided);
            }
            if (decided) return rc;
            if (rc == SKIP_TUNNEL_TOO_DEEP) return rc;
        }
    done_udp:;
    } else if (proto == 132) {
        if (cap < 12) return SKIP_TRUNCATED;
        k->has_ports = 1;
        k->sport = be16(l4); k->dport = be16(l4 + 2);
        k->payload = l4 + 12;
        k->payload_len = wire >= 12 ? wire - 12 : 0;
        k->payload_cap = cap - 12;
    } else if (proto == 4 || proto == 41) {
        int decided = 0;
        int rc = try_inner(r, 0, 0, l4, cap, k, depth, &decided);
        if (decided || rc == SKIP_TUNNEL_TOO_DEEP) return rc;
    } else if (proto == 47) {
        int decided = 0;
        int rc = decode_gre(r, l4, cap, k, depth, &decided);
        if (decided || rc == SKIP_TUNNEL_TOO_DEEP) return rc;
    } else if (proto == 1 || proto == 58) {
        /* ICMP: count its body as payload but keep no ports */
        if (cap < 4) return SKIP_TRUNCATED;
        k->payload = l4 + 4;
        k->payload_len = wire >= 4 ? wire - 4 : 0;
        k->payload_cap = cap - 4;
    }
    if (k->payload_cap > k->payload_len) k->payload_cap = k->payload_len;
    return OK;
}

#define TS_LIMIT ((i64)1 << 61) /* keeps differences of clamped times from overflowing */

static void handle_packet(Reader *r, u32 lt, const u8 *data, u32 caplen, i64 ts) {
    r->packets_read++;
    if (ts > TS_LIMIT) ts = TS_LIMIT;
    if (ts < -TS_LIMIT) ts = -TS_LIMIT;
    Pkt k;
    k.vlan = -1;
    int rc = decode_link(r, lt, data, caplen, &k);
    if (rc != OK) {
        r->skipped[rc]++;
        return;
    }
    if (ts > r->now) r->now = ts;
    account(r, &k, ts);
}

/* ------------------------------------------------------------------ pcap */

static int64_t ts_from_pcap(Reader *r, u32 sec, u32 frac) {
    return (i64)sec * 1000000000LL + (r->nano ? (i64)frac : (i64)frac * 1000);
}

/* Returns 1 if a packet was handled, 0 at clean end, -1 on a cut/corrupt file. */
static int pcap_next(Reader *r) {
    u64 off = in_offset(r);
    const u8 *h = in_need(r, 16);
    if (!h) {
        size_t left = r->in_len - r->in_pos;
        if (left == 0 || r->error[0]) return left ? -1 : 0;
        snprintf(r->error, sizeof r->error,
                 "file cut at byte %llu (packet %lld): record header needs 16 bytes, %zu left",
                 (unsigned long long)off, (long long)r->packets_read + 1, left);
        return -1;
    }
    u32 sec = f32(r->swapped, h), frac = f32(r->swapped, h + 4);
    u32 incl = f32(r->swapped, h + 8);
    if (incl > MAX_RECORD) {
        snprintf(r->error, sizeof r->error,
                 "corrupt record at byte %llu (packet %lld): captured length %u",
                 (unsigned long long)off, (long long)r->packets_read + 1, incl);
        return -1;
    }
    const u8 *d = in_need(r, 16 + (size_t)incl);
    if (!d) {
        if (r->error[0]) return -1;
        snprintf(r->error, sizeof r->error,
                 "file cut at byte %llu (packet %lld): record of %u bytes, %zu left",
                 (unsigned long long)off, (long long)r->packets_read + 1, incl,
                 r->in_len - r->in_pos - 16);
        return -1;
    }
    r->in_pos += 16 + incl;
    handle_packet(r, r->pcap_linktype, d + 16, incl, ts_from_pcap(r, sec, frac));
    return 1;
}

/* ------------------------------------------------------------------ pcapng */

static i64 ng_ts(const Iface *f, u32 hi, u32 lo) {
    u64 t = ((u64)hi << 32) | lo;
    __int128 ns;
    if (f->tsres_pow2) {
        ns = ((__int128)t * 1000000000) >> (f->tsres_v > 60 ? 60 : f->tsres_v);
    } else {
        int v = f->tsres_v;
        if (v <= 9) {
            __int128 m = 1;
            for (int i = v; i < 9; i++) m *= 10;
            ns = (__int128)t * m;
        } else {
            u64 d = 1;
            for (int i = 9; i < v && i < 28; i++) d *= 10;
            ns = (__int128)(t / d);
        }
    }
    ns += (__int128)f->ts_offset_s * 1000000000;
    if (ns > ((__int128)1 << 61)) ns = (__int128)1 << 61;
    if (ns < -((__int128)1 << 61)) ns = -((__int128)1 << 61);
    return (i64)ns;
}

static void ng_read_idb(Reader *r, const u8 *b, u32 blen) {
    if (r->n_ifaces >= MAX_IFACES) return;
    Iface *f = &r->ifaces[r->n_ifaces++];
    memset(f, 0, sizeof *f);
    f->tsres_v = 6;
    if (blen < 20) { f->supported = 0; f->linktype = 0xFFFF; return; }
    int s = r->ng_swapped;
    f->linktype = f16(s, b + 8);
    f->snaplen = f32(s, b + 12);
    f->supported = linktype_supported(f->linktype);
    u32 o = 16, end = blen - 4;
    while (o + 4 <= end) {
        u16 code = f16(s, b + o), olen = f16(s, b + o + 2);
        o += 4;
        if (code == 0 || o + olen > end) break;
        if (code == 9 && olen >= 1) {
            f->tsres_pow2 = (b[o] & 0x80) != 0;
            f->tsres_v = b[o] & 0x7F;
        } else if (code == 14 && olen >= 8) {
            u64 lo = f32(s, b + o), hi = f32(s, b + o + 4);
            f->ts_offset_s = (i64)(s ? ((lo << 32) | hi) : ((hi << 32) | lo));
        }
        o += (olen + 3u) & ~3u;
    }
}

static int ng_next(Reader *r) {
    for (;;) {
        u64 off = in_offset(r);
        const u8 *b = in_need(r, 12);
        if (!b) {
            size_t left = r->in_len - r->in_pos;
            if (left == 0 || r->error[0]) return left ? -1 : 0;
            snprintf(r->error, sizeof r->error,
                     "file cut at byte %llu (after packet %lld): block header needs 12 bytes, %zu left",
                     (unsigned long long)off, (long long)r->packets_read, left);
            return -1;
        }
        u32 type = f32(r->ng_swapped, b);
        if (type == 0x0A0D0D0A) {
            u32 bom = le32(b + 8);
            if (bom == 0x1A2B3C4D) r->ng_swapped = 0;
            else if (bom == 0x4D3C2B1A) r->ng_swapped = 1;
            else {
                snprintf(r->error, sizeof r->error,
                         "corrupt section header at byte %llu: bad byte-order magic",
                         (unsigned long long)off);
                return -1;
            }
            r->n_ifaces = 0;
        }
        u32 blen = f32(r->ng_swapped, b + 4);
        if (blen < 12 || (blen & 3) || blen > MAX_RECORD) {
            snprintf(r->error, sizeof r->error,
                     "corrupt block at byte %llu (after packet %lld): block length %u",
                     (unsigned long long)off, (long long)r->packets_read, blen);
            return -1;
        }
        b = in_need(r, blen);
        if (!b) {
            if (r->error[0]) return -1;
            snprintf(r->error, sizeof r->error,
                     "file cut at byte %llu (after packet %lld): block of %u bytes, %zu left",
                     (unsigned long long)off, (long long)r->packets_read, blen,
                     r->in_len - r->in_pos);
            return -1;
        }
        r->in_pos += blen;
        int s = r->ng_swapped;
        if (f32(s, b + blen - 4) != blen) {
            snprintf(r->error, sizeof r->error,
                     "corrupt block at byte %llu: trailing length differs from %u",
                     (unsigned long long)off, blen);
            return -1;
        }
        if (type == 1) {
            ng_read_idb(r, b, blen);
            continue;
        }
        if (type == 6 || type == 2) {
            if (blen < 32) { r->packets_read++; r->skipped[SKIP_TRUNCATED]++; return 1; }
            u32 ifid = type == 6 ? f32(s, b + 8) : f16(s, b + 8);
            u32 hi = f32(s, b + 12), lo = f32(s, b + 16), cap = f32(s, b + 20);
            if (cap > blen - 32) cap = blen - 32;
            if (ifid >= (u32)r->n_ifaces) {
                r->packets_read++;
                r->skipped[SKIP_UNKNOWN_INTERFACE]++;
                return 1;
            }
            Iface *f = &r->ifaces[ifid];
            i64 ts = ng_ts(f, hi, lo);
            r->last_ts = ts;
            if (!f->supported) { r->packets_read++; r->skipped[SKIP_UNSUPPORTED_LINK]++; return 1; }
            handle_packet(r, f->linktype, b + 28, cap, ts);
            return 1;
        }
        if (type == 3) {
            if (blen < 16) continue;
            if (r->n_ifaces < 1) {
                r->packets_read++;
                r->skipped[SKIP_UNKNOWN_INTERFACE]++;
                return 1;
            }
            Iface *f = &r->ifaces[0];
            u32 cap = f32(s, b + 8);
            if (cap > blen - 16) cap = blen - 16;
            if (f->snaplen && cap > f->snaplen) cap = f->snaplen;
            if (!f->supported) { r->packets_read++; r->skipped[SKIP_UNSUPPORTED_LINK]++; return 1; }
            handle_packet(r, f->linktype, b + 12, cap, r->last_ts);
            return 1;
        }
        /* any other block (name resolution, statistics, custom, ...) is skipped */
    }
}

/* ------------------------------------------------------------------ Python type */

static void Reader_dealloc(Reader *r) {
    if (r->fd >= 0) close(r->fd);
    free(r->in);
    if (r->flows) {
        for (i64 i = 0; i < r->n_used; i++) {
            free(r->flows[i].side[0].head);
            free(r->flows[i].side[1].head);
        }
    }
    free(r->flows);
    free(r->table);
    for (int c = 0; c < C_N; c++) buf_free(&r->out[c]);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "payload_bytes", "payload_packets", "idle_timeout",
                             "active_timeout", NULL};
    PyObject *path_obj;
    unsigned int pb = 2048, pp = 16;
    double idle = 120.0, active = 1800.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|IIdd", kwlist, PyUnicode_FSConverter, &path_obj,
                                     &pb, &pp, &idle, &active))
        return -1;
    const char *path = PyBytes_AS_STRING(path_obj);
    r->fd = -1;
    r->free_head = -1;
    r->lru_head = r->lru_tail = -1;
    r->payload_bytes = pb > (1u << 20) ? (1u << 20) : pb;
    r->payload_packets = pp > 65535 ? 65535 : pp;
    r->idle_ns = (i64)(idle * 1e9);
    r->active_ns = (i64)(active * 1e9);
    r->now = INT64_MIN;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
        Py_DECREF(path_obj);
        return -1;
    }
    Py_DECREF(path_obj);
    r->fd = fd;
    struct stat st;
    if (fstat(fd, &st) == 0) r->bytes_total = (u64)st.st_size;
    r->in_cap = READ_CHUNK;
    r->in = malloc(r->in_cap);
    if (!r->in || table_init(r, 1 << 12)) {
        PyErr_NoMemory();
        return -1;
    }
    out_reset(r);

    const u8 *h = in_need(r, 24);
    if (!h) {
        size_t n = r->in_len;
        PyErr_Format(FormatError, n ? "too short to be a capture file (%zu bytes)" : "empty file",
                     n);
        return -1;
    }
    u32 m = le32(h);
    if (m == 0xA1B2C3D4 || m == 0xA1B23C4D || m == 0xD4C3B2A1 || m == 0x4D3CB2A1) {
        r->swapped = (m == 0xD4C3B2A1 || m == 0x4D3CB2A1);
        r->nano = (m == 0xA1B23C4D || m == 0x4D3CB2A1);
        u16 major = f16(r->swapped, h + 4);
        u16 minor = f16(r->swapped, h + 6);
        if (major != 2) {
            PyErr_Format(FormatError, "unsupported pcap version %u.%u", major, minor);
            return -1;
        }
        r->pcap_snaplen = f32(r->swapped, h + 16);
        r->pcap_linktype = f32(r->swapped, h + 20) & 0x0FFFFFFF;
        if (!linktype_supported(r->pcap_linktype)) {
            PyErr_Format(UnsupportedLinkType, "unsupported link type %u", r->pcap_linktype);
            return -1;
        }
        r->in_pos = 24;
        return 0;
    }
    if (m == 0x0A0D0D0A) {
        u32 bom = le32(h + 8);
        if (bom != 0x1A2B3C4D && bom != 0x4D3C2B1A) {
            PyErr_SetString(FormatError, "pcapng section header with a bad byte-order magic");
            return -1;
        }
        int s = bom == 0x4D3C2B1A;
        u16 major = f16(s, h + 12);
        if (major != 1) {
            PyErr_Format(FormatError, "unsupported pcapng version %u", major);
            return -1;
        }
        r->is_ng = 1;
        return 0;
    }
    PyErr_SetString(FormatError, "not a pcap or pcapng file (unknown magic number)");
    return -1;
}

/* read(max_rows, max_bytes): process input until max_rows flows are finished or
 * max_bytes of input were consumed; returns a dict of column buffers (or None
 * once everything has been handed out). */
static PyObject *Reader_read(Reader *r, PyObject *args) {
    long long max_rows = 65536, max_bytes = 8 << 20;
    if (!PyArg_ParseTuple(args, "|LL", &max_rows, &max_bytes)) return NULL;
    if (max_rows < 1) max_rows = 1;
    if (r->done) Py_RETURN_NONE;
    out_reset(r);
    Py_BEGIN_ALLOW_THREADS
    u64 start = in_offset(r);
    while (!r->finished && r->out_rows < max_rows && in_offset(r) - start < (u64)max_bytes &&
           !r->nomem) {
        int rc = r->is_ng ? ng_next(r) : pcap_next(r);
        if (rc <= 0) {
            r->finished = 1;
            break;
        }
        if (r->lru_head >= 0 && r->now - r->flows[r->lru_head].ts_last > r->idle_ns)
            expire_idle(r, max_rows);
    }
    if (r->finished)
        while (r->lru_head >= 0 && r->out_rows < max_rows) flow_export(r, r->lru_head);
    Py_END_ALLOW_THREADS
    if (r->nomem) {
        r->done = 1;
        return PyErr_NoMemory();
    }
    if (r->finished && r->lru_head < 0) r->done = 1;

    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int c = 0; c < C_N; c++) {
        PyObject *b = PyBytes_FromStringAndSize(r->out[c].d ? r->out[c].d : "", (Py_ssize_t)r->out[c].len);
        if (!b || PyDict_SetItemString(d, COL_NAMES[c], b)) {
            Py_XDECREF(b);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(b);
    }
    PyObject *n = PyLong_FromLongLong(r->out_rows);
    if (!n || PyDict_SetItemString(d, "rows", n)) {
        Py_XDECREF(n);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(n);
    /* give back memory held by a large batch */
    for (int c = 0; c < C_N; c++)
        if (r->out[c].cap > (64u << 20)) buf_free(&r->out[c]);
    return d;
}

static PyObject *Reader_skipped(Reader *r, void *unused) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int i = 0; i < SKIP_N; i++) {
        if (!r->skipped[i]) continue;
        PyObject *v = PyLong_FromLongLong(r->skipped[i]);
        if (!v || PyDict_SetItemString(d, SKIP_NAMES[i], v)) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}
static PyObject *Reader_bytes_read(Reader *r, void *u) { return PyLong_FromUnsignedLongLong(in_offset(r)); }
static PyObject *Reader_bytes_total(Reader *r, void *u) { return PyLong_FromUnsignedLongLong(r->bytes_total); }
static PyObject *Reader_packets(Reader *r, void *u) { return PyLong_FromLongLong(r->packets_read); }
static PyObject *Reader_flows(Reader *r, void *u) { return PyLong_FromLongLong(r->flows_out); }
static PyObject *Reader_active(Reader *r, void *u) { return PyLong_FromLongLong(r->active); }
static PyObject *Reader_done(Reader *r, void *u) { return PyBool_FromLong(r->done); }
static PyObject *Reader_format(Reader *r, void *u) { return PyUnicode_FromString(r->is_ng ? "pcapng" : "pcap"); }
static PyObject *Reader_error(Reader *r, void *u) {
    if (!r->error[0]) Py_RETURN_NONE;
    return PyUnicode_FromString(r->error);
}

static PyGetSetDef Reader_getset[] = {
    {"skipped", (getter)Reader_skipped, NULL, "packets skipped, by reason", NULL},
    {"bytes_read", (getter)Reader_bytes_read, NULL, "input bytes consumed", NULL},
    {"bytes_total", (getter)Reader_bytes_total, NULL, "file size", NULL},
    {"packets_read", (getter)Reader_packets, NULL, "packet records read", NULL},
    {"flows", (getter)Reader_flows, NULL, "flows handed out", NULL},
    {"active_flows", (getter)Reader_active, NULL, "flows still in the table", NULL},
    {"done", (getter)Reader_done, NULL, "all flows handed out", NULL},
    {"format", (getter)Reader_format, NULL, "pcap or pcapng", NULL},
    {"error", (getter)Reader_error, NULL, "why reading stopped early, or None", NULL},
    {NULL},
};

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_VARARGS,
     "read(max_rows, max_bytes) -> dict of column buffers, or None when finished"},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "minewatch.sources._fastpcap.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path, payload_bytes=2048, payload_packets=16, idle_timeout=120.0, "
              "active_timeout=1800.0): flows of a pcap/pcapng file",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
};

static struct PyModuleDef fastpcap_module = {
    PyModuleDef_HEAD_INIT, "_fastpcap", "Compiled pcap/pcapng flow reader.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastpcap(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fastpcap_module);
    if (!m) return NULL;
    FormatError = PyErr_NewException("minewatch.sources._fastpcap.FormatError", PyExc_ValueError, NULL);
    UnsupportedLinkType = PyErr_NewException("minewatch.sources._fastpcap.UnsupportedLinkType",
                                             FormatError, NULL);
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddObject(m, "FormatError", FormatError) < 0 ||
        PyModule_AddObject(m, "UnsupportedLinkType", UnsupportedLinkType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
