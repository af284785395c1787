/*
 * setadam_port.c - an independent C99 port of Adam and SET-Adam, written from the mathematics
 * (docs/src/guide/vectors.md, docs/src/algorithms), used to show that the golden vectors can be
 * checked from any language. It shares no code with the Python reference.
 *
 *   cc -std=c99 -O2 -ffp-contract=off -o setadam_port setadam_port.c -lm
 *   ./setadam_port VECTOR.txt OUTPUT.txt        (one vector in the text format, see the guide)
 *
 * Reads the text twin of one vector (DIR/text/<id>.txt), runs its steps in float64 and writes
 * the parameters and moments after every step in the output format that
 * `setadam-conformance vectors check DIR OUTPUTS` reads. Exit status 0 on success, 2 on a
 * malformed vector or an I/O error.
 *
 * Version 2 (the whole optimizer contract): param groups, each with its own config (the config
 * records after a 'group' record are that group's); an lr factor per step (step k uses
 * lr * f_k in every group); a gradient presence mask per step. An array without gradient is not
 * stepped: theta, m, v, vmax and its own step count s_i stay, and it does not count in its
 * layer's sums nor its minimum. Bias corrections use each array's count: 1 - b^(s_i).
 *
 * SET-Adam, one step t (per layer l of d_l coordinates):
 *   g   <- -g if maximize;  g <- g + wd*theta if weight decay is "l2"
 *   m    = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
 *   c_l  = (sum v)^2 / (d_l sum v^2)         (evaluated on v / max v: no overflow, no underflow)
 *   w    = sqrt(c_l v / (1 - b2^t) + eps),  wt = w - tau min_l w
 *   theta <- theta (1 - lr wd) if weight decay is "decoupled"
 *   theta <- theta - lr / (1 - b1^t) m / wt
 * Adam: denom = sqrt(vh + eps_root) + eps with vh = v / (1 - b2^t); amsgrad "torch" keeps
 * vmax = max(vmax, v) and uses vh = vmax / (1 - b2^t); "optax" keeps vmax = max(vmax, vh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXTOK 128

typedef struct {
    double lr, b1, b2, eps, eps_root, tau, wd;
    int decoupled, amsgrad, amsgrad_optax, maximize;
} Config;

typedef struct {
    char id[MAXTOK];
    int setadam;                 /* 1: SET-Adam, 0: Adam */
    Config base;                 /* version 1: every array's config */
    Config *cfg;                 /* [ngroups] (version 1: &base) */
    Config *cur;                 /* the config that config records set */
    int *group_of;               /* [narrays] */
    int ngroups;
    int narrays, nlayers, nsteps;
    long *size;                  /* [narrays] */
    long *offset;                /* [narrays] start of array i in the flat vectors */
    long total;
    int *layer_len;              /* [nlayers] */
    int **layer_arrays;          /* [nlayers][layer_len] */
    long step0;
    double *theta, *m, *v, *vmax; /* [total] */
    double *grads;               /* [nsteps * total] */
    double *lr_factor;           /* [nsteps], 1 unless given */
    unsigned char *active;       /* [nsteps * narrays], 1 unless given */
    long *count;                 /* [narrays] each array's step count */
} Vector;

static FILE *in;
static const char *in_name;

static void fail(const char *msg, const char *tok) {
    fprintf(stderr, "setadam_port: %s: %s%s%s\n", in_name, msg, tok ? ": " : "", tok ? tok : "");
    exit(2);
}

/* Next blank-separated token; lines starting with '#' are comments. Returns 0 at EOF. */
static int token(char *buf) {
    for (;;) {
        if (fscanf(in, "%127s", buf) != 1) return 0;
        if (buf[0] != '#') return 1;
        int ch;
        while ((ch = fgetc(in)) != EOF && ch != '\n') {}
    }
}

static void need(char *buf) { if (!token(buf)) fail("unexpected end of file", NULL); }

static long need_long(void) {
    char buf[MAXTOK], *end;
    need(buf);
    long x = strtol(buf, &end, 10);
    if (*end != '\0') fail("expected an integer", buf);
    return x;
}

static double need_double(void) {
    char buf[MAXTOK], *end;
    need(buf);
    double x = strtod(buf, &end); /* C99 strtod reads hexadecimal floats such as 0x1.8p+1 */
    if (*end != '\0') fail("expected a number", buf);
    return x;
}

static void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s);
    if (!p) fail("out of memory", NULL);
    return p;
}

/* "KEY [T] I SIZE values": reads I and SIZE, checks SIZE, stores the values at dst (or drops). */
static void read_values(Vector *V, double *dst) {
    if (!V->theta) fail("array data before the 'steps' record", NULL);
    long i = need_long(), n = need_long();
    if (i < 0 || i >= V->narrays || n != V->size[i]) fail("bad array index or size", NULL);
    for (long j = 0; j < n; j++) {
        double x = need_double();
        if (dst) dst[V->offset[i] + j] = x;
    }
}

static void read_vector(Vector *V) {
    char key[MAXTOK], buf[MAXTOK];
    long version;
    memset(V, 0, sizeof *V);
    V->nsteps = -1;
    V->cur = &V->base;
    need(key);
    if (strcmp(key, "setadam-vector") != 0) fail("not a vector file (want 'setadam-vector 1')", key);
    version = need_long();
    if (version != 1 && version != 2) fail("unsupported format version", NULL);
    while (token(key)) {
        if (!strcmp(key, "end")) {
            if (V->ngroups == 0) { /* one config for every array */
                V->ngroups = 1;
                V->cfg = &V->base;
                V->group_of = xcalloc((size_t)V->narrays, sizeof(int));
            }
            return;
        }
        else if (!strcmp(key, "id")) need(V->id);
        else if (!strcmp(key, "algorithm")) {
            need(buf);
            if (!strcmp(buf, "setadam")) V->setadam = 1;
            else if (!strcmp(buf, "adam")) V->setadam = 0;
            else fail("unknown algorithm", buf);
        }
        else if (!strcmp(key, "lr")) V->cur->lr = need_double();
        else if (!strcmp(key, "beta1")) V->cur->b1 = need_double();
        else if (!strcmp(key, "beta2")) V->cur->b2 = need_double();
        else if (!strcmp(key, "eps")) V->cur->eps = need_double();
        else if (!strcmp(key, "eps_root")) V->cur->eps_root = need_double();
        else if (!strcmp(key, "tau")) V->cur->tau = need_double();
        else if (!strcmp(key, "weight_decay")) V->cur->wd = need_double();
        else if (!strcmp(key, "weight_decay_mode")) {
            need(buf);
            V->cur->decoupled = !strcmp(buf, "decoupled");
            if (!V->cur->decoupled && strcmp(buf, "l2")) fail("unknown weight_decay_mode", buf);
        }
        else if (!strcmp(key, "amsgrad")) V->cur->amsgrad = (int)need_long();
        else if (!strcmp(key, "amsgrad_mode")) {
            need(buf);
            V->cur->amsgrad_optax = !strcmp(buf, "optax");
            if (!V->cur->amsgrad_optax && strcmp(buf, "torch")) fail("unknown amsgrad_mode", buf);
        }
        else if (!strcmp(key, "maximize")) V->cur->maximize = (int)need_long();
        else if (!strcmp(key, "groups")) {  /* version 2; after 'arrays' */
            V->ngroups = (int)need_long();
            if (V->ngroups < 1 || !V->size) fail("bad 'groups' record", NULL);
            V->cfg = xcalloc((size_t)V->ngroups, sizeof(Config));
            V->group_of = xcalloc((size_t)V->narrays, sizeof(int));
        }
        else if (!strcmp(key, "group")) {   /* group J K I1..IK, then group J's config records */
            long j = need_long(), k = need_long();
            if (j < 0 || j >= V->ngroups) fail("bad group index", NULL);
            for (long q = 0; q < k; q++) {
                long i = need_long();
                if (i < 0 || i >= V->narrays) fail("bad array index in group", NULL);
                V->group_of[i] = (int)j;
            }
            V->cur = &V->cfg[j];
        }
        else if (!strcmp(key, "arrays")) {
            V->narrays = (int)need_long();
            V->size = xcalloc((size_t)V->narrays, sizeof(long));
            V->offset = xcalloc((size_t)V->narrays, sizeof(long));
        }
        else if (!strcmp(key, "array")) {   /* array I SIZE NDIM DIMS... */
            long i = need_long(), n = need_long(), nd = need_long();
            if (i < 0 || i >= V->narrays) fail("bad array index", NULL);
            for (long k = 0; k < nd; k++) (void)need_long();
            V->size[i] = n;
            V->offset[i] = V->total;
            V->total += n;
        }
        else if (!strcmp(key, "layers")) {
            V->nlayers = (int)need_long();
            V->layer_len = xcalloc((size_t)V->nlayers, sizeof(int));
            V->layer_arrays = xcalloc((size_t)V->nlayers, sizeof(int *));
        }
        else if (!strcmp(key, "layer")) {   /* layer J K I1..IK */
            long j = need_long(), k = need_long();
            if (j < 0 || j >= V->nlayers) fail("bad layer index", NULL);
            V->layer_len[j] = (int)k;
            V->layer_arrays[j] = xcalloc((size_t)k, sizeof(int));
            for (long q = 0; q < k; q++) V->layer_arrays[j][q] = (int)need_long();
        }
        else if (!strcmp(key, "steps")) {
            V->nsteps = (int)need_long();
            V->theta = xcalloc((size_t)V->total, sizeof(double));
            V->m = xcalloc((size_t)V->total, sizeof(double));
            V->v = xcalloc((size_t)V->total, sizeof(double));
            V->vmax = xcalloc((size_t)V->total, sizeof(double));
            V->grads = xcalloc((size_t)(V->nsteps * V->total), sizeof(double));
            V->lr_factor = xcalloc((size_t)V->nsteps, sizeof(double));
            V->active = xcalloc((size_t)(V->nsteps * V->narrays), 1);
            for (int k = 0; k < V->nsteps; k++) V->lr_factor[k] = 1.0;
            memset(V->active, 1, (size_t)(V->nsteps * V->narrays));
        }
        else if (!strcmp(key, "state_step")) V->step0 = need_long();
        else if (!strcmp(key, "init_param")) read_values(V, V->theta);
        else if (!strcmp(key, "init_m")) read_values(V, V->m);
        else if (!strcmp(key, "init_v")) read_values(V, V->v);
        else if (!strcmp(key, "init_vmax")) read_values(V, V->vmax);
        else if (!strcmp(key, "grad")) {
            long t = need_long() - V->step0; /* absolute step number -> 1..nsteps */
            if (V->nsteps < 0 || t < 1 || t > V->nsteps) fail("grad: bad step", NULL);
            read_values(V, V->grads + (t - 1) * V->total);
        }
        else if (!strcmp(key, "lr_factor")) {  /* lr_factor T F (version 2) */
            long t = need_long() - V->step0;
            if (V->nsteps < 0 || t < 1 || t > V->nsteps) fail("lr_factor: bad step", NULL);
            V->lr_factor[t - 1] = need_double();
        }
        else if (!strcmp(key, "active")) {     /* active T N B1..BN (version 2) */
            long t = need_long() - V->step0, n = need_long();
            if (V->nsteps < 0 || t < 1 || t > V->nsteps || n != V->narrays) fail("active: bad record", NULL);
            for (long i = 0; i < n; i++) V->active[(t - 1) * V->narrays + i] = need_long() != 0;
        }
        else if (!strcmp(key, "expect_count")) { /* expect_count T N C1..CN: not needed here */
            (void)need_long();
            long n = need_long();
            for (long i = 0; i < n; i++) (void)need_long();
        }
        else if (!strncmp(key, "expect_", 7)) { (void)need_long(); read_values(V, NULL); }
        else fail("unknown record", key);
    }
    fail("missing 'end'", NULL);
}

static void write_record(FILE *out, const char *key, long t, const Vector *V, const double *x) {
    for (int i = 0; i < V->narrays; i++) {
        fprintf(out, "%s %ld %d %ld", key, t, i, V->size[i]);
        for (long j = 0; j < V->size[i]; j++) fprintf(out, " %a", x[V->offset[i] + j]);
        fputc('\n', out);
    }
}

static void run(Vector *V, FILE *out) {
    double *den = xcalloc((size_t)V->total, sizeof(double)); /* wt (SET-Adam) or denom (Adam) */
    double *bc1 = xcalloc((size_t)V->narrays, sizeof(double));
    double *bc2 = xcalloc((size_t)V->narrays, sizeof(double));
    V->count = xcalloc((size_t)V->narrays, sizeof(long));
    for (int i = 0; i < V->narrays; i++) V->count[i] = V->step0;
    fprintf(out, "setadam-output 1\nid %s\ndtype float64\n", V->id);
    for (int k = 1; k <= V->nsteps; k++) {
        long t = V->step0 + k;
        const double *gk = V->grads + (long)(k - 1) * V->total;
        const unsigned char *on = V->active + (long)(k - 1) * V->narrays;
        for (int i = 0; i < V->narrays; i++) {
            const Config *C = V->cfg + V->group_of[i];
            if (!on[i]) continue; /* no gradient: not stepped, its count stays */
            V->count[i] += 1;
            long s = V->count[i];
            bc1[i] = 1.0 - pow(C->b1, (double)s); bc2[i] = 1.0 - pow(C->b2, (double)s);
            for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                double gj = C->maximize ? -gk[j] : gk[j];
                if (C->wd != 0.0 && !C->decoupled) gj += C->wd * V->theta[j];
                V->m[j] = C->b1 * V->m[j] + (1.0 - C->b1) * gj;
                V->v[j] = C->b2 * V->v[j] + (1.0 - C->b2) * (gj * gj);
            }
        }
        if (V->setadam) {
            for (int l = 0; l < V->nlayers; l++) {
                double vm = 0.0, s1 = 0.0, s2 = 0.0, c = 1.0, wmin = INFINITY;
                long d = 0;
                for (int q = 0; q < V->layer_len[l]; q++) {
                    int i = V->layer_arrays[l][q];
                    if (!on[i]) continue; /* an array without gradient is not in its layer */
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++)
                        if (V->v[j] > vm) vm = V->v[j];
                    d += V->size[i];
                }
                if (vm > 0.0) { /* all-zero layer: c is irrelevant (c*0 = 0), keep 1 */
                    for (int q = 0; q < V->layer_len[l]; q++) {
                        int i = V->layer_arrays[l][q];
                        if (!on[i]) continue;
                        for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                            double r = V->v[j] / vm;
                            s1 += r;
                            s2 += r * r;
                        }
                    }
                    c = (s1 * s1) / ((double)d * s2);
                }
                for (int q = 0; q < V->layer_len[l]; q++) {
                    int i = V->layer_arrays[l][q];
                    const Config *C = V->cfg + V->group_of[i]; /* a layer lies in one group */
                    if (!on[i]) continue;
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                        den[j] = sqrt(c * V->v[j] / bc2[i] + C->eps);
                        if (den[j] < wmin) wmin = den[j];
                    }
                }
                for (int q = 0; q < V->layer_len[l]; q++) {
                    int i = V->layer_arrays[l][q];
                    const Config *C = V->cfg + V->group_of[i];
                    if (!on[i]) continue;
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++)
                        den[j] -= C->tau * wmin;
                }
            }
        } else {
            for (int i = 0; i < V->narrays; i++) {
                const Config *C = V->cfg + V->group_of[i];
                if (!on[i]) continue;
                for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                    double vh;
                    if (C->amsgrad && C->amsgrad_optax) {
                        vh = V->v[j] / bc2[i];
                        if (vh > V->vmax[j]) V->vmax[j] = vh;
                        vh = V->vmax[j];
                    } else if (C->amsgrad) {
                        if (V->v[j] > V->vmax[j]) V->vmax[j] = V->v[j];
                        vh = V->vmax[j] / bc2[i];
                    } else {
                        vh = V->v[j] / bc2[i];
                    }
                    den[j] = sqrt(vh + C->eps_root) + C->eps;
                }
            }
        }
        for (int i = 0; i < V->narrays; i++) {
            const Config *C = V->cfg + V->group_of[i];
            double lr = C->lr * V->lr_factor[k - 1];
            if (!on[i]) continue;
            for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                if (C->wd != 0.0 && C->decoupled) V->theta[j] *= 1.0 - lr * C->wd;
                V->theta[j] -= (lr / bc1[i]) * (V->m[j] / den[j]);
            }
        }
        write_record(out, "param", t, V, V->theta);
        write_record(out, "m", t, V, V->m);
        write_record(out, "v", t, V, V->v);
        if (!V->setadam && V->cfg[0].amsgrad) write_record(out, "vmax", t, V, V->vmax);
    }
    fputs("end\n", out);
    free(den);
    free(bc1);
    free(bc2);
}

int main(int argc, char **argv) {
    Vector V;
    if (argc != 3) {
        fprintf(stderr, "usage: %s VECTOR.txt OUTPUT.txt\n", argv[0]);
        return 2;
    }
    in_name = argv[1];
    in = fopen(argv[1], "r");
    if (!in) fail("cannot open", NULL);
    read_vector(&V);
    fclose(in);
    if (V.nsteps < 0) fail("missing 'steps'", NULL);
    FILE *out = fopen(argv[2], "w");
    if (!out) { in_name = argv[2]; fail("cannot write", NULL); }
    run(&V, out);
    if (fclose(out) != 0) { in_name = argv[2]; fail("write error", NULL); }
    return 0;
}
