/* test_concurrent_save.c - stage 15: saves to one path from several processes at once,
   and saves killed at random moments (docs/checkpoints.md, "Saving").

   The rule checked after every round of concurrent savers: the file at the path is
   byte for byte the serialization of exactly one writer, that writer got DLF_OK, and
   it is the writer that renamed last in lock order. Lock order is seen through the
   DLF_SAVE_HOOK test hook, which logs each step of each save into shared memory
   while the lock is held, so the log's order of "renamed" events is the lock order.
   Every writer that got DLF_OK renamed exactly once, no two writers held the lock at
   once, a waiting save always succeeds, a DLF_SAVE_NOWAIT save either succeeds or
   returns DLF_ERR_BUSY and leaves no trace, and no temporary file is left behind.

   Killed saves: a child saves a 4 MB checkpoint and is SIGKILLed after a random
   delay, half the time anywhere in the save, half the time around the stretch that
   holds the lock (half of the rounds with a second, unkilled saver racing it). The file must
   then load and equal, byte for byte, the previous good file or a complete new one
   (the last one renamed), and the next save must succeed (the kernel released the
   dead saver's lock) and leave no temporary behind. Then the cleanup's naming rule,
   the lock as another program sees it (flock on path.lock), and a write that fails.
   POSIX only: elsewhere it reports 0 checks. */
#if defined(__unix__) || defined(__APPLE__)
#define _DEFAULT_SOURCE      /* fork, kill, usleep, mmap's MAP_ANONYMOUS, flock, setrlimit */
#define _DARWIN_C_SOURCE
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#define TEST_POSIX 1
static void test_save_hook(const char *event);
#define DLF_SAVE_HOOK(event, path) test_save_hook(event)
#endif
#define DLF_IMPLEMENTATION
#include "harness.h"

#ifdef TEST_POSIX
/* The files live in a directory of this run's own: on tmpfs (/dev/shm) where there is
   one, so that fsync, which the test cannot observe anyway, does not make the 1000-odd
   saves wait for a disk that other programs keep busy; else under build/. */
static char test_dir[256], test_path[300];
#define DIR_ test_dir
#define PATH test_path
static const char *at(const char *suffix)   /* PATH followed by suffix (8 in use at once) */
{
    static char buf[8][400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s%s", test_path, suffix);
    return buf[k];
}
#define MAXW 4
#define LOGN 1024

typedef struct shared {
    volatile int go;              /* the start line: children spin until it is 1 */
    volatile int rc[MAXW];        /* each writer's return code */
    volatile int n_log;           /* the hook's log: writer id and event letter */
    int log_who[LOGN];
    char log_ev[LOGN];            /* l locked, w written, r renamed, u unlocking */
    double log_t[LOGN];           /* when (CLOCK_MONOTONIC, the same clock in every process) */
    volatile int inside, overlap; /* holders of the lock right now; set if ever > 1 */
    volatile int hold_us;         /* a writer sleeps this long after "written" */
} shared;

static shared *sh;
static int me = -1;               /* this process's writer id; -1: the parent, not logged */
static double now_s(void);

static void test_save_hook(const char *event)
{
    int i;
    if (!sh || me < 0) return;
    if (event[0] == 'l' && __sync_fetch_and_add(&sh->inside, 1) != 0) sh->overlap = 1;
    if (event[0] == 'u') __sync_fetch_and_sub(&sh->inside, 1);
    i = __sync_fetch_and_add(&sh->n_log, 1);
    if (i < LOGN) { sh->log_who[i] = me; sh->log_ev[i] = event[0]; sh->log_t[i] = now_s(); }
    __sync_synchronize();
    if (event[0] == 'w' && sh->hold_us) usleep((useconds_t)sh->hold_us);
}

static void log_reset(void)
{
    sh->n_log = 0;
    sh->inside = sh->overlap = 0;
    sh->go = 0;
    __sync_synchronize();
}

static unsigned long rng_state = 12345;
static unsigned long rnd(unsigned long n)
{
    rng_state = rng_state * 6364136223846793005ul + 1442695040888963407ul;
    return (rng_state >> 33) % n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    unsigned char *b;
    *len = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Files in DIR_ whose names contain ".tmp" (temporaries of any save). */
static int count_tmps(void)
{
    DIR *d = opendir(DIR_);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

/* A writer's checkpoint: tensor "w" of n floats, a pattern unique to (id, round), and
   metadata naming both; bytes/len is its serialization, what a save must put on disk. */
typedef struct writer {
    dlf_tensor *t;
    dlf_named_tensor nt[1];
    char id_s[16], round_s[16];
    const char *meta[4];
    unsigned char *bytes;
    size_t len;
} writer;

static void writer_make(writer *w, int id, int round, int n)
{
    int i;
    w->t = dlf_tensor_new2(1, n);
    for (i = 0; i < n; i++) w->t->data[i] = (float)(id * 4000000 + round * 1000 + i % 977);
    w->nt[0].name = "w";
    w->nt[0].t = w->t;
    snprintf(w->id_s, sizeof w->id_s, "%d", id);
    snprintf(w->round_s, sizeof w->round_s, "%d", round);
    w->meta[0] = "writer"; w->meta[1] = w->id_s;
    w->meta[2] = "round";  w->meta[3] = w->round_s;
    if (dlf_safetensors_serialize(w->nt, 1, w->meta, 2, &w->bytes, &w->len) != DLF_OK) w->bytes = NULL;
}

static void writer_free(writer *w)
{
    dlf_tensor_free(w->t);
    DLF_FREE(w->bytes);
}

static int writer_save(writer *w, int flags)
{
    return dlf_safetensors_save_ex(PATH, w->nt, 1, w->meta, 2, flags);
}

/* Which writer's bytes the file holds: 0..n-1, -1 none (mixed, missing, other). */
static int file_owner(writer *ws, int n)
{
    size_t len;
    unsigned char *b = slurp(PATH, &len);
    int i, who = -1;
    for (i = 0; b && i < n; i++)
        if (ws[i].bytes && len == ws[i].len && memcmp(b, ws[i].bytes, len) == 0) who = i;
    free(b);
    return who;
}

/* N writers, distinct data, released at once; then the rule in the file comment. */
static void test_concurrent(int rounds)
{
    int r, i, w, busy_rounds = 0, mixed = 0, wrong_owner = 0;
    GROUP("concurrent");
    for (r = 0; r < rounds; r++) {
        writer ws[MAXW];
        pid_t pid[MAXW];
        int nowait = r % 2, owner, last_renamed = -1, renamed[MAXW] = {0}, ok[MAXW] = {0}, n_ok = 0, n_busy = 0;
        for (w = 0; w < MAXW; w++) writer_make(&ws[w], w, r, 20000 + 1000 * w);
        log_reset();
        sh->hold_us = nowait ? 2000 : 0;   /* no-wait rounds: a holder keeps the lock 2 ms */
        for (w = 0; w < MAXW; w++) {
            sh->rc[w] = 99;
            pid[w] = fork();
            if (pid[w] == 0) {
                me = w;
                while (!sh->go) {}
                sh->rc[w] = writer_save(&ws[w], nowait ? DLF_SAVE_NOWAIT : 0);
                _exit(0);
            }
        }
        __sync_synchronize();
        sh->go = 1;
        for (w = 0; w < MAXW; w++) waitpid(pid[w], NULL, 0);
        owner = file_owner(ws, MAXW);
        for (i = 0; i < sh->n_log && i < LOGN; i++)
            if (sh->log_ev[i] == 'r') { renamed[sh->log_who[i]]++; last_renamed = sh->log_who[i]; }
        for (w = 0; w < MAXW; w++) {
            ok[w] = sh->rc[w] == DLF_OK;
            n_ok += ok[w];
            n_busy += sh->rc[w] == DLF_ERR_BUSY;
            CHECK(ok[w] || (nowait && sh->rc[w] == DLF_ERR_BUSY),
                  "round %d (%s): writer %d returned %d", r, nowait ? "no-wait" : "wait", w, sh->rc[w]);
            CHECK(renamed[w] == ok[w], "round %d: writer %d got rc %d but renamed %d times",
                  r, w, sh->rc[w], renamed[w]);
        }
        mixed += owner < 0;
        wrong_owner += owner >= 0 && !ok[owner];
        CHECK(owner >= 0, "round %d: the file is not exactly one writer's bytes (mixed or torn)", r);
        CHECK(owner < 0 || ok[owner], "round %d: the file holds writer %d's data, which got rc %d",
              r, owner, owner >= 0 ? sh->rc[owner] : 0);
        CHECK(owner == last_renamed, "round %d: the file is writer %d's, the last rename in lock order was %d's",
              r, owner, last_renamed);
        CHECK(!sh->overlap, "round %d: two saves held the lock at once", r);
        CHECK(n_ok >= 1 && n_ok + n_busy == MAXW, "round %d: %d ok, %d busy of %d", r, n_ok, n_busy, MAXW);
        CHECK(count_tmps() == 0, "round %d: %d temporaries left behind", r, count_tmps());
        busy_rounds += n_busy > 0;
        for (w = 0; w < MAXW; w++) writer_free(&ws[w]);
    }
    CHECK(busy_rounds > 0, "no no-wait round ever saw DLF_ERR_BUSY: the savers never overlapped");
    printf("  concurrent: %d rounds of %d savers, %d no-wait rounds saw DLF_ERR_BUSY, %d mixed files, "
           "%d files of a writer told it failed\n", rounds, MAXW, busy_rounds, mixed, wrong_owner);
}

/* A child saving an 4 MB checkpoint is SIGKILLed at a random moment. */
static void test_kill(int rounds)
{
    writer good, big, small;
    int r, i, stale_rounds = 0, new_rounds = 0, mid_rounds = 0, rc;
    double t0, t_save, t_lock = 0, t_unlock = 0, win;
    pid_t pk, ps;
    const int big_n = 1 << 20;
    GROUP("kill");
    writer_make(&good, 9, 0, 1000);
    rc = writer_save(&good, 0);
    CHECK(rc == DLF_OK, "first save: %s", dlf_last_error());
    /* how long a whole save by a child takes: the kills are spread over 1.2 times that */
    writer_make(&big, 0, 0, big_n);
    log_reset();
    t0 = now_s();
    if ((pk = fork()) == 0) { me = 0; _exit(writer_save(&big, 0) == DLF_OK ? 0 : 1); }
    waitpid(pk, &rc, 0);
    t_save = now_s() - t0;
    for (i = 0; i < sh->n_log && i < LOGN; i++) {   /* when the lock was held, from the fork */
        if (sh->log_ev[i] == 'l') t_lock = sh->log_t[i] - t0;
        if (sh->log_ev[i] == 'u') t_unlock = sh->log_t[i] - t0;
    }
    win = t_unlock > t_lock ? t_unlock - t_lock : 0;
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "calibration save failed");
    writer_free(&big);
    writer_free(&good);
    writer_make(&good, 9, 0, 1000);
    CHECK(writer_save(&good, 0) == DLF_OK, "save: %s", dlf_last_error());
    /* at least `rounds`; more (up to 4x) while fewer than 1 in 20 kills landed inside the
       lock, which a loaded or sanitized machine's timing can make rare */
    for (r = 1; r <= rounds || (mid_rounds < rounds / 20 && r <= 4 * rounds); r++) {
        int racer = r % 2, owner, last_r = -1, k_written_after = 0, k_locked = 0, k_unlocked = 0, st;
        writer cand[3];
        dlf_safetensors sf;
        /* the kill: half the time anywhere in the save, half the time around the stretch
           that holds the lock (writing, fsync, rename), as timed above */
        double when = rnd(2) ? rnd(1000) * 1.2e-3 * t_save : t_lock - 0.2 * win + rnd(1000) * 1.4e-3 * win;
        long delay_k = (long)((when > 0 ? when : 0) * 1e6), delay_s = (long)(rnd(1000) * 1e-3 * t_save * 1e6);
        writer_make(&big, 0, r, big_n);
        writer_make(&small, 1, r, 3000);
        log_reset();
        sh->hold_us = 0;
        sh->rc[0] = sh->rc[1] = 99;
        sh->go = 1;
        ps = -1;
        t0 = now_s();
        if ((pk = fork()) == 0) { me = 0; sh->rc[0] = writer_save(&big, 0); _exit(0); }
        if (racer && (ps = fork()) == 0) { me = 1; usleep((useconds_t)delay_s); sh->rc[1] = writer_save(&small, 0); _exit(0); }
        usleep((useconds_t)delay_k);
        kill(pk, SIGKILL);
        waitpid(pk, &st, 0);
        if (ps > 0) waitpid(ps, NULL, 0);
        /* the file: the previous good one, or the last one renamed in lock order; or the
           killed saver's when it was killed between its rename and the hook's log entry */
        cand[0] = big; cand[1] = small; cand[2] = good;
        owner = file_owner(cand, 3);
        for (i = 0; i < sh->n_log && i < LOGN; i++) {
            if (sh->log_ev[i] == 'r') { last_r = sh->log_who[i]; k_written_after = 0; }
            if (sh->log_ev[i] == 'w' && sh->log_who[i] == 0) k_written_after = 1;
            if (sh->log_who[i] == 0) { k_locked |= sh->log_ev[i] == 'l'; k_unlocked |= sh->log_ev[i] == 'u'; }
            /* the machine's speed changes: follow when the saver held the lock this time */
            if (sh->log_who[i] == 0 && sh->log_ev[i] == 'l' && !racer) t_lock = 0.5 * t_lock + 0.5 * (sh->log_t[i] - t0);
            if (sh->log_who[i] == 0 && sh->log_ev[i] == 'u' && !racer) t_unlock = 0.5 * t_unlock + 0.5 * (sh->log_t[i] - t0);
        }
        win = t_unlock > t_lock ? t_unlock - t_lock : win;
        mid_rounds += k_locked && !k_unlocked;   /* killed holding the lock: mid-write or before its rename */
        CHECK(owner >= 0, "round %d: the file is neither the previous good file nor a complete new one", r);
        CHECK(owner == (last_r < 0 ? 2 : last_r) || (owner == 0 && k_written_after),
              "round %d: the file is %d's, the last rename was %d's", r, owner, last_r);
        CHECK(!racer || sh->rc[1] == DLF_OK, "round %d: the racing saver got %d", r, sh->rc[1]);
        rc = dlf_safetensors_load(&sf, PATH);
        CHECK(rc == DLF_OK, "round %d: the file does not load: %s", r, dlf_last_error());
        if (rc == DLF_OK) dlf_safetensors_free(&sf);
        new_rounds += owner == 0;
        stale_rounds += count_tmps() > 0;      /* a racer, when there is one, removed them already */
        /* the next save: the dead saver's lock is gone, its temporary is removed */
        writer_free(&good);
        writer_make(&good, 9, r, 1000);
        rc = writer_save(&good, DLF_SAVE_NOWAIT);
        CHECK(rc == DLF_OK, "round %d: the save after the kill: %s", r, dlf_last_error());
        CHECK(count_tmps() == 0, "round %d: %d stale temporaries left after the next save", r, count_tmps());
        CHECK(file_owner(&good, 1) == 0, "round %d: the next save's file is not its bytes", r);
        writer_free(&big);
        writer_free(&small);
    }
    writer_free(&good);
    CHECK(mid_rounds >= rounds / 20, "only %d of %d kills hit a saver holding the lock: the test missed the write",
          mid_rounds, r - 1);
    printf("  kill: %d rounds, a save takes %.1f ms (%.1f ms of it locked); %d kills hit the saver holding the lock, %d left a temporary "
           "that the next save removed, %d rounds ended with the killed saver's complete file\n",
           r - 1, 1e3 * t_save, 1e3 * win, mid_rounds, stale_rounds, new_rounds);
}

/* The cleanup rule: only path.tmp and path.<digits>.<digits>.tmp, regular files. */
static void test_stale_names(void)
{
    static const char *gone_s[] = { ".123456.7.tmp", ".tmp" };
    static const char *kept_s[] = { ".5.tmp", ".1.2.3.tmp", "x.1.2.tmp", ".1.2.tmp.bak", ".1.x.tmp" };
    char gone[2][400], kept[6][400];
    writer w;
    struct stat sb;
    size_t i;
    FILE *f;
    GROUP("stale names");
    for (i = 0; i < 2; i++) snprintf(gone[i], sizeof gone[i], "%s%s", PATH, gone_s[i]);
    for (i = 0; i < 5; i++) snprintf(kept[i], sizeof kept[i], "%s%s", PATH, kept_s[i]);
    snprintf(kept[5], sizeof kept[5], "%s/other.1.2.tmp", DIR_);
    for (i = 0; i < 2; i++) { f = fopen(gone[i], "wb"); fputs("partial", f); fclose(f); }
    for (i = 0; i < 6; i++) { f = fopen(kept[i], "wb"); fputs("mine", f); fclose(f); }
    mkdir(at(".7.7.tmp"), 0755);
    writer_make(&w, 3, 0, 100);
    CHECK(writer_save(&w, 0) == DLF_OK, "save: %s", dlf_last_error());
    for (i = 0; i < 2; i++)
        CHECK(stat(gone[i], &sb) != 0, "%s was not removed", gone[i]);
    for (i = 0; i < 6; i++) {
        CHECK(stat(kept[i], &sb) == 0, "%s is not a temporary of the path, but was removed", kept[i]);
        remove(kept[i]);
    }
    CHECK(stat(at(".7.7.tmp"), &sb) == 0 && S_ISDIR(sb.st_mode), "a directory was removed");
    rmdir(at(".7.7.tmp"));
    writer_free(&w);
}

/* The lock as a program sees it: flock on path.lock. */
static void test_nowait_and_wait(void)
{
    writer a, b;
    int lfd, st;
    pid_t pid;
    dlf_ckpt c;
    GROUP("lock");
    writer_make(&a, 0, 0, 500);
    writer_make(&b, 1, 0, 500);
    CHECK(writer_save(&a, 0) == DLF_OK, "save: %s", dlf_last_error());
    lfd = open(at(".lock"), O_RDWR);
    CHECK(lfd >= 0 && flock(lfd, LOCK_EX) == 0, "the lock file %s.lock exists and can be locked", PATH);
    CHECK(writer_save(&b, DLF_SAVE_NOWAIT) == DLF_ERR_BUSY && strstr(dlf_last_error(), "DLF_SAVE_NOWAIT")
          && strstr(dlf_last_error(), PATH), "a no-wait save while locked: DLF_ERR_BUSY: %s", dlf_last_error());
    dlf_ckpt_init(&c);
    dlf_ckpt_add_tensor(&c, "w", b.t);
    CHECK(dlf_ckpt_save_ex(&c, PATH, DLF_SAVE_NOWAIT) == DLF_ERR_BUSY, "dlf_ckpt_save_ex no-wait: DLF_ERR_BUSY");
    CHECK(file_owner(&a, 1) == 0 && count_tmps() == 0, "a refused save leaves the file and no temporary");
    sh->rc[0] = 99;
    if ((pid = fork()) == 0) { close(lfd); sh->rc[0] = writer_save(&b, 0); _exit(0); }  /* the fd shares our lock */
    usleep(200000);
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "a waiting save returned while the lock was held");
    CHECK(file_owner(&a, 1) == 0, "the file changed while the lock was held");
    close(lfd);   /* releases the lock */
    waitpid(pid, &st, 0);
    CHECK(sh->rc[0] == DLF_OK && file_owner(&b, 1) == 0, "the waiting save went on once the lock was free");
    CHECK(dlf_ckpt_save_ex(&c, PATH, 0) == DLF_OK, "dlf_ckpt_save_ex: %s", dlf_last_error());
    th_armed = 1;
    EXPECT_PANIC(dlf_ckpt_save_ex(&c, PATH, 6), "flags 6");
    EXPECT_PANIC(dlf_safetensors_save_ex(NULL, a.nt, 1, NULL, 0, 0), "path is NULL");
    th_armed = 0;
    dlf_ckpt_free(&c);
    writer_free(&a);
    writer_free(&b);
}

/* A write that fails (the file size limit: EFBIG) removes its temporary and leaves the
   old file; the message says so. */
static void test_write_failure(void)
{
    writer a, big;
    pid_t pid;
    GROUP("write failure");
    writer_make(&a, 0, 1, 500);
    writer_make(&big, 1, 1, 1 << 20);
    CHECK(writer_save(&a, 0) == DLF_OK, "save: %s", dlf_last_error());
    sh->rc[0] = 99;
    if ((pid = fork()) == 0) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = 100000;
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        sh->rc[0] = writer_save(&big, 0);
        sh->rc[1] = strstr(dlf_last_error(), "is unchanged") != NULL;
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    CHECK(sh->rc[0] == DLF_ERR_IO && sh->rc[1], "a save past the file size limit: DLF_ERR_IO (%d), 'unchanged' said",
          sh->rc[0]);
    CHECK(file_owner(&a, 1) == 0 && count_tmps() == 0, "the old file stays, the temporary is gone");
    writer_free(&a);
    writer_free(&big);
}

int main(void)
{
    th_init();
    snprintf(test_dir, sizeof test_dir, "%s/dlf_test_concurrent_save.%ld",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "build", (long)getpid());
    snprintf(test_path, sizeof test_path, "%s/ckpt.safetensors", test_dir);
    mkdir("build", 0755);
    if (mkdir(DIR_, 0755) != 0) { printf("cannot create %s\n", DIR_); return 1; }
    printf("  in %s\n", DIR_);
    sh = (shared *)mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { printf("mmap failed\n"); return 1; }
    test_stale_names();
    test_nowait_and_wait();
    test_write_failure();
    { double t = now_s(); test_concurrent(100); printf("  (%.1f s)\n", now_s() - t); }
    { double t = now_s(); test_kill(100); printf("  (%.1f s)\n", now_s() - t); }
    remove(PATH);
    remove(at(".lock"));
    rmdir(DIR_);
    TEST_MAIN_END();
}
#else
int main(void)
{
    printf("tests/test_concurrent_save.c: POSIX only (fork, flock); nothing to run here\n");
    TEST_MAIN_END();
}
#endif
