/* Copyright: scalelab.testbed contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * The C reference of benchmarks/connections.py: what the kernel can do with
 * blocking calls and nothing else. The same protocol on stdin/stdout as the
 * naive Python baseline there, so the benchmark drives both the same way:
 *
 *   cref server ADDR PORT N   listen (backlog 65535), print "ready", accept N
 *                             connections and keep them, print "held N", wait
 *                             for a line on stdin (or its end), exit
 *   cref client ADDR PORT N   print "loaded", wait for a line on stdin, then
 *                             socket() + blocking connect() N times, print
 *                             "done GOT T ERRORS" (T: CLOCK_MONOTONIC seconds,
 *                             the clock of Python's time.monotonic()), wait for
 *                             a line on stdin, exit
 *
 * The benchmark forks one server and one client process per port, each under
 * the same file descriptor limit as the engine's workers (raised to the hard
 * limit here), in the same two namespaces.
 *
 * Build: cc -O2 -o cref benchmarks/cref.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static void wait_line(void)
{
    char buf[64];
    if (!fgets(buf, sizeof buf, stdin))
        return;
}

static int parse_addr(const char *addr, int port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    return inet_pton(AF_INET, addr, &sa->sin_addr) == 1 ? 0 : -1;
}

static int server(struct sockaddr_in *sa, long n)
{
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(ls, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(ls, 65535) < 0) {
        fprintf(stderr, "cref server: %s\n", strerror(errno));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    long held = 0;
    while (held < n) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "cref server: accept: %s\n", strerror(errno));
            break;
        }
        held++;
    }
    printf("held %ld\n", held);
    fflush(stdout);
    wait_line();
    return 0;
}

static int client(struct sockaddr_in *sa, long n)
{
    printf("loaded\n");
    fflush(stdout);
    wait_line();
    long got = 0, errors = 0;
    while (got < n) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) {
            errors++;
            if (errors > 1000)
                break;
            continue;
        }
        if (connect(s, (struct sockaddr *)sa, sizeof *sa) < 0) {
            errors++;
            close(s);
            if (errors > 1000)
                break;
            continue;
        }
        got++;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("done %ld %.6f %ld\n", got, ts.tv_sec + ts.tv_nsec / 1e9, errors);
    fflush(stdout);
    wait_line();
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    if (argc != 5 || parse_addr(argv[2], atoi(argv[3]), &sa) < 0 || atol(argv[4]) < 1) {
        fprintf(stderr, "usage: cref server|client IPV4 PORT N\n");
        return 2;
    }
    raise_nofile();
    if (strcmp(argv[1], "server") == 0)
        return server(&sa, atol(argv[4]));
    if (strcmp(argv[1], "client") == 0)
        return client(&sa, atol(argv[4]));
    fprintf(stderr, "usage: cref server|client IPV4 PORT N\n");
    return 2;
}
