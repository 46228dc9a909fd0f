/*
 * spawn_time — measures one process from start to exit, for the start-up
 * benchmark (deflect-bench --startup): the harness is C so that what it adds
 * is the same, and small, for every program it times.
 *
 * Usage: spawn_time PROGRAM [ARGS...]
 *   Runs PROGRAM once with standard input, output and error on /dev/null.
 *   Time: CLOCK_MONOTONIC from just before posix_spawn to the return of
 *   wait4 (process creation, exec, dynamic linking, the program's work and
 *   its exit, as a caller such as containerd sees it).
 *   Peak RSS: the child's ru_maxrss from wait4 (KiB).
 *
 * Output (stdout, one line):
 *   wall_ns=N maxrss_kib=K status=S
 * S is the exit status, or 128 + the signal number when a signal ended it.
 * Exit status 0 when the child was run and waited for (whatever its status),
 * 1 on a usage or spawn error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: spawn_time PROGRAM [ARGS...]\n");
        return 1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (int fd = 0; fd <= 2; fd++)
        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);

    struct timespec t0, t1;
    pid_t pid;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int error = posix_spawn(&pid, argv[1], &actions, NULL, argv + 1, environ);
    if (error != 0) {
        fprintf(stderr, "spawn_time: %s: %s\n", argv[1], strerror(error));
        return 1;
    }
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0) {
        if (errno != EINTR) {
            perror("spawn_time: wait4");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    posix_spawn_file_actions_destroy(&actions);

    long long nanoseconds = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("wall_ns=%lld maxrss_kib=%ld status=%d\n", nanoseconds, usage.ru_maxrss, code);
    return 0;
}
