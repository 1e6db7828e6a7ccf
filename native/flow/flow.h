/*
 * The one record layout shared by the BPF program (flow.bpf.c), the addon
 * (flow_addon.cc) and the TypeScript decoder (src/flow/record.ts). Every record
 * starts with its version and size so a reader can skip what it does not know.
 * Change a field: bump FLOW_RECORD_VERSION and the decoder together.
 */
#ifndef TRAFFIC_FLOW_H
#define TRAFFIC_FLOW_H

#define FLOW_RECORD_VERSION 2

/* Record kinds. */
#define FLOW_KIND_OPEN 1
#define FLOW_KIND_CLOSE 2
#define FLOW_KIND_STATE 3
#define FLOW_KIND_BYTES 4 /* struct flow_bytes_record */

/* Direction of a FLOW_KIND_BYTES record, seen from the socket. */
#define FLOW_DIR_OUT 1 /* sent (cgroup egress) */
#define FLOW_DIR_IN 2  /* received (cgroup ingress) */
#define FLOW_FIRST_BYTES_MAX 512

/* Who opened the connection, as seen from the observed socket. */
#define FLOW_SIDE_UNKNOWN 0
#define FLOW_SIDE_CLIENT 1 /* this socket called connect() */
#define FLOW_SIDE_SERVER 2 /* this socket was accepted from a listener */

/* Where the owner (pid, comm, uid) was taken: always in the owning process. */
#define FLOW_OWNER_NONE 0
#define FLOW_OWNER_CONNECT 1
#define FLOW_OWNER_IO 2
#define FLOW_OWNER_CLOSE 3
#define FLOW_OWNER_CREATE 4 /* UDP: the socket() call (cgroup sock_create) */

/* Record flags. */
#define FLOW_F_PARTIAL 0x01     /* the socket existed before capture started */
#define FLOW_F_FIN_IN 0x02      /* the peer's FIN was received (counted in bytes_received) */
#define FLOW_F_ESTABLISHED 0x04 /* the connection reached ESTABLISHED */
#define FLOW_F_OPEN_PENDING 0x08 /* close record: the open record may follow it in the ring */

/* Event selection bits in flow_config.events. */
#define FLOW_EV_OPEN 0x1
#define FLOW_EV_CLOSE 0x2
#define FLOW_EV_STATE 0x4

/* Transport selection bits in flow_config.protocols (0 = TCP only, as before UDP existed). */
#define FLOW_PROTO_TCP 0x1
#define FLOW_PROTO_UDP 0x2

/* Side selection bits in flow_config.sides (0 = every side). */
#define FLOW_SIDES_CLIENT 0x1
#define FLOW_SIDES_SERVER 0x2

#define FLOW_COMM_LEN 16

struct flow_record {
	__u16 version;
	__u16 size;
	__u8 kind;
	__u8 side;
	__u8 family; /* 4 or 6; IPv4-mapped IPv6 sockets are reported as 4 */
	__u8 flags;
	__u64 cookie;         /* socket cookie: the connection id */
	__u64 ts_ns;          /* CLOCK_BOOTTIME of this event */
	__u64 start_ns;       /* SYN sent (client) or child socket created (server); 0 if partial */
	__u64 established_ns; /* 0 when never established */
	__u64 cgroup_id;      /* cgroup v2 id of the socket */
	__u32 netns;          /* network namespace inode */
	__u32 pid;            /* owner tgid, 0 when not known */
	__u32 uid;
	__u8 owner_from;
	__u8 old_state;
	__u8 new_state;
	__u8 protocol; /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	char comm[FLOW_COMM_LEN];
	__u8 saddr[16]; /* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* remote address */
	__u16 sport;    /* local port, host order */
	__u16 dport;    /* remote port, host order */
	__s32 error;    /* sk_err at close (positive errno), 0 when none */
	/*
	 * Close statistics (FLOW_KIND_CLOSE). TCP: raw tcp_sock counters. UDP: payload bytes
	 * (bytes_sent, bytes_received) and datagrams (segs_out, segs_in) counted by the
	 * cgroup_skb programs; the other fields stay 0.
	 */
	__u64 bytes_sent;     /* TCP: includes retransmitted bytes */
	__u64 bytes_retrans;
	__u64 bytes_received; /* TCP: includes the peer's FIN when FLOW_F_FIN_IN */
	__u32 total_retrans;
	__u32 srtt_us;
	__u32 rtt_min_us; /* 0xFFFFFFFF: no RTT sample */
	__u32 segs_in;    /* UDP: datagrams received */
	__u32 segs_out;   /* UDP: datagrams sent */
	__u32 reserved1;
};

/* The first payload bytes of one direction of a connection (cgroup_skb programs). */
struct flow_bytes_record {
	__u16 version;
	__u16 size;
	__u8 kind; /* FLOW_KIND_BYTES */
	__u8 direction;
	__u16 length; /* bytes valid in data */
	__u32 reserved0;
	__u32 reserved1;
	__u64 cookie;
	__u64 ts_ns;
	__u8 data[FLOW_FIRST_BYTES_MAX];
};

/*
 * Every field the TypeScript decoder reads, at the offset it reads it: a change to a struct
 * that moves one fails to compile here, and the addon exports these lists so the decoder
 * checks its own copy against them before it reads a record (src/flow/record.ts).
 */
#define FLOW_RECORD_FIELDS(X) \
	X(version, 0) \
	X(size, 2) \
	X(kind, 4) \
	X(side, 5) \
	X(family, 6) \
	X(flags, 7) \
	X(cookie, 8) \
	X(ts_ns, 16) \
	X(start_ns, 24) \
	X(established_ns, 32) \
	X(cgroup_id, 40) \
	X(netns, 48) \
	X(pid, 52) \
	X(uid, 56) \
	X(owner_from, 60) \
	X(old_state, 61) \
	X(new_state, 62) \
	X(protocol, 63) \
	X(comm, 64) \
	X(saddr, 80) \
	X(daddr, 96) \
	X(sport, 112) \
	X(dport, 114) \
	X(error, 116) \
	X(bytes_sent, 120) \
	X(bytes_retrans, 128) \
	X(bytes_received, 136) \
	X(total_retrans, 144) \
	X(srtt_us, 148) \
	X(rtt_min_us, 152) \
	X(segs_in, 156) \
	X(segs_out, 160)
#define FLOW_BYTES_RECORD_FIELDS(X) \
	X(version, 0) \
	X(size, 2) \
	X(kind, 4) \
	X(direction, 5) \
	X(length, 6) \
	X(cookie, 16) \
	X(ts_ns, 24) \
	X(data, 32)

#ifdef __cplusplus
#define FLOW_STATIC_ASSERT static_assert
#else
#define FLOW_STATIC_ASSERT _Static_assert
#endif
#define FLOW_ASSERT_RECORD(field, offset) FLOW_STATIC_ASSERT(__builtin_offsetof(struct flow_record, field) == offset, "flow_record." #field " moved");
#define FLOW_ASSERT_BYTES(field, offset) FLOW_STATIC_ASSERT(__builtin_offsetof(struct flow_bytes_record, field) == offset, "flow_bytes_record." #field " moved");
FLOW_RECORD_FIELDS(FLOW_ASSERT_RECORD)
FLOW_BYTES_RECORD_FIELDS(FLOW_ASSERT_BYTES)
FLOW_STATIC_ASSERT(sizeof(struct flow_record) == 168, "flow_record size");
FLOW_STATIC_ASSERT(sizeof(struct flow_bytes_record) == 32 + FLOW_FIRST_BYTES_MAX, "flow_bytes_record size");

/* Filters applied in the kernel before a record is reserved. */
struct flow_config {
	__u32 events;      /* FLOW_EV_* */
	__u32 sides;       /* FLOW_SIDES_*, 0 = all */
	__u64 cgroup_id;   /* 0 = any cgroup */
	__u32 port_filter; /* 1: the service port must be in flow_ports */
	__u32 cidr_filter; /* 1: the remote address must match flow_cidr4/flow_cidr6 */
	__u32 first_bytes; /* first payload bytes to capture per direction, 0..FLOW_FIRST_BYTES_MAX */
	__u32 wake_bytes;  /* unread ring bytes from which a record wakes the reader (a quarter of the ring) */
	__u32 protocols;   /* FLOW_PROTO_*, 0 = TCP only */
	__u32 reserved;
};

struct flow_cidr4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct flow_cidr6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

#endif
