/* peak_rss.c - run a command and report its peak resident memory.

   usage: peak_rss COMMAND [ARGS...]

   The command's output goes where this program's goes; when it ends, the last line on
   stderr is
       peak_rss_kb=<the command's ru_maxrss in KiB>
   and the exit status is the command's (128 + the signal when a signal ended it).

   Why a program of its own: Linux keeps a process's peak RSS across exec, and a child
   starts as a copy of its parent (or, with vfork, inside the parent's memory), so a
   child of the Python driver would report at least the driver's own peak. This program
   is a few hundred KiB, so its child's peak is the command's own, give or take that. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    pid_t pid;
    int status;
    struct rusage ru;
    if (argc < 2) {
        fprintf(stderr, "usage: peak_rss COMMAND [ARGS...]\n");
        return 2;
    }
    pid = fork();
    if (pid < 0) { perror("peak_rss: fork"); return 127; }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror("peak_rss: exec");
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0) {
        perror("peak_rss: waitpid");
        return 127;
    }
    getrusage(RUSAGE_CHILDREN, &ru);   /* the only child, now waited for */
    fflush(stdout);
    fprintf(stderr, "peak_rss_kb=%ld\n", (long)ru.ru_maxrss);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
