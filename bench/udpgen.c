// UDP load for bench/udp.bench.ts: `echo PORT` answers every datagram (recvmmsg/sendmmsg
// batches); `client HOST PORT SIZE SECONDS WINDOW` keeps up to WINDOW datagrams of SIZE
// bytes in flight on one connected socket and prints how many came back per second. A C
// generator, so the load is never what limits the figure.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int echo(int port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) return perror("bind"), 1;
  printf("{\"up\":true}\n");
  fflush(stdout);
  static char buf[BATCH][2048];
  struct mmsghdr m[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){buf[i], sizeof buf[i]};
      memset(&m[i], 0, sizeof m[i]);
      m[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, m, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) iov[i].iov_len = m[i].msg_len;
    sendmmsg(fd, m, n, 0);
  }
}

static int client(const char* host, int port, int size, double seconds, int window) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) return perror("connect"), 1;
  static char out[2048], in[BATCH][2048];
  memset(out, 'x', sizeof out);
  struct mmsghdr sm[BATCH], rm[BATCH];
  struct iovec siov[BATCH], riov[BATCH];
  for (int i = 0; i < BATCH; i++) {
    siov[i] = (struct iovec){out, (size_t)size};
    memset(&sm[i], 0, sizeof sm[i]);
    sm[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i], .msg_iovlen = 1};
  }
  long received = 0, lost = 0;
  int outstanding = 0;
  double start = now(), end = start + seconds, last = start;
  while (now() < end) {
    while (outstanding < window) {
      int k = window - outstanding < BATCH ? window - outstanding : BATCH;
      int s = sendmmsg(fd, sm, k, MSG_DONTWAIT);
      if (s <= 0) break;
      outstanding += s;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, 1);
    for (;;) {
      for (int i = 0; i < BATCH; i++) {
        riov[i] = (struct iovec){in[i], sizeof in[i]};
        memset(&rm[i], 0, sizeof rm[i]);
        rm[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
      }
      int n = recvmmsg(fd, rm, BATCH, MSG_DONTWAIT, NULL);
      if (n <= 0) break;
      received += n;
      outstanding -= n;
      if (outstanding < 0) outstanding = 0;
      last = now();
    }
    // Nothing back for 50 ms: what is in flight was dropped somewhere.
    if (outstanding > 0 && now() - last > 0.05) {
      lost += outstanding;
      outstanding = 0;
      last = now();
    }
  }
  double took = now() - start;
  printf("{\"received\":%ld,\"lost\":%ld,\"rate\":%.0f}\n", received, lost, received / took);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "echo") == 0) return echo(atoi(argv[2]));
  if (argc == 7 && strcmp(argv[1], "client") == 0) return client(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
  fprintf(stderr, "usage: udpgen echo PORT | udpgen client HOST PORT SIZE SECONDS WINDOW\n");
  return 2;
}
