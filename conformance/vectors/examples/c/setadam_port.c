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
    char id[MAXTOK];
    int setadam;                 /* 1: SET-Adam, 0: Adam */
    double lr, b1, b2, eps, eps_root, tau, wd;
    int decoupled, amsgrad, amsgrad_optax, maximize;
    int narrays, nlayers, nsteps;
    long *size;                  /* [narrays] */
    long *offset;                /* [narrays] start of array i in the flat vectors */
    long total;
    int *layer_len;              /* [nlayers] */
    int **layer_arrays;          /* [nlayers][layer_len] */
    long step0;
    double *theta, *m, *v, *vmax; /* [total] */
    double *grads;               /* [nsteps * total] */
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
    memset(V, 0, sizeof *V);
    V->nsteps = -1;
    need(key);
    if (strcmp(key, "setadam-vector") != 0) fail("not a vector file (want 'setadam-vector 1')", key);
    if (need_long() != 1) fail("unsupported format version", NULL);
    while (token(key)) {
        if (!strcmp(key, "end")) return;
        else if (!strcmp(key, "id")) need(V->id);
        else if (!strcmp(key, "algorithm")) {
            need(buf);
            if (!strcmp(buf, "setadam")) V->setadam = 1;
            else if (!strcmp(buf, "adam")) V->setadam = 0;
            else fail("unknown algorithm", buf);
        }
        else if (!strcmp(key, "lr")) V->lr = need_double();
        else if (!strcmp(key, "beta1")) V->b1 = need_double();
        else if (!strcmp(key, "beta2")) V->b2 = need_double();
        else if (!strcmp(key, "eps")) V->eps = need_double();
        else if (!strcmp(key, "eps_root")) V->eps_root = need_double();
        else if (!strcmp(key, "tau")) V->tau = need_double();
        else if (!strcmp(key, "weight_decay")) V->wd = need_double();
        else if (!strcmp(key, "weight_decay_mode")) {
            need(buf);
            V->decoupled = !strcmp(buf, "decoupled");
            if (!V->decoupled && strcmp(buf, "l2")) fail("unknown weight_decay_mode", buf);
        }
        else if (!strcmp(key, "amsgrad")) V->amsgrad = (int)need_long();
        else if (!strcmp(key, "amsgrad_mode")) {
            need(buf);
            V->amsgrad_optax = !strcmp(buf, "optax");
            if (!V->amsgrad_optax && strcmp(buf, "torch")) fail("unknown amsgrad_mode", buf);
        }
        else if (!strcmp(key, "maximize")) V->maximize = (int)need_long();
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
    double *g = xcalloc((size_t)V->total, sizeof(double));
    double *den = xcalloc((size_t)V->total, sizeof(double)); /* wt (SET-Adam) or denom (Adam) */
    fprintf(out, "setadam-output 1\nid %s\ndtype float64\n", V->id);
    for (int k = 1; k <= V->nsteps; k++) {
        long t = V->step0 + k;
        const double *gk = V->grads + (long)(k - 1) * V->total;
        double bc1 = 1.0 - pow(V->b1, (double)t), bc2 = 1.0 - pow(V->b2, (double)t);
        for (long j = 0; j < V->total; j++) {
            double gj = V->maximize ? -gk[j] : gk[j];
            if (V->wd != 0.0 && !V->decoupled) gj += V->wd * V->theta[j];
            g[j] = gj;
            V->m[j] = V->b1 * V->m[j] + (1.0 - V->b1) * gj;
            V->v[j] = V->b2 * V->v[j] + (1.0 - V->b2) * (gj * gj);
        }
        if (V->setadam) {
            for (int l = 0; l < V->nlayers; l++) {
                double vm = 0.0, s1 = 0.0, s2 = 0.0, c = 1.0, wmin = INFINITY;
                long d = 0;
                for (int q = 0; q < V->layer_len[l]; q++) {
                    int i = V->layer_arrays[l][q];
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++)
                        if (V->v[j] > vm) vm = V->v[j];
                    d += V->size[i];
                }
                if (vm > 0.0) { /* all-zero layer: c is irrelevant (c*0 = 0), keep 1 */
                    for (int q = 0; q < V->layer_len[l]; q++) {
                        int i = V->layer_arrays[l][q];
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
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++) {
                        den[j] = sqrt(c * V->v[j] / bc2 + V->eps);
                        if (den[j] < wmin) wmin = den[j];
                    }
                }
                for (int q = 0; q < V->layer_len[l]; q++) {
                    int i = V->layer_arrays[l][q];
                    for (long j = V->offset[i]; j < V->offset[i] + V->size[i]; j++)
                        den[j] -= V->tau * wmin;
                }
            }
        } else {
            for (long j = 0; j < V->total; j++) {
                double vh;
                if (V->amsgrad && V->amsgrad_optax) {
                    vh = V->v[j] / bc2;
                    if (vh > V->vmax[j]) V->vmax[j] = vh;
                    vh = V->vmax[j];
                } else if (V->amsgrad) {
                    if (V->v[j] > V->vmax[j]) V->vmax[j] = V->v[j];
                    vh = V->vmax[j] / bc2;
                } else {
                    vh = V->v[j] / bc2;
                }
                den[j] = sqrt(vh + V->eps_root) + V->eps;
            }
        }
        for (long j = 0; j < V->total; j++) {
            if (V->wd != 0.0 && V->decoupled) V->theta[j] *= 1.0 - V->lr * V->wd;
            V->theta[j] -= (V->lr / bc1) * (V->m[j] / den[j]);
        }
        write_record(out, "param", t, V, V->theta);
        write_record(out, "m", t, V, V->m);
        write_record(out, "v", t, V, V->v);
        if (!V->setadam && V->amsgrad) write_record(out, "vmax", t, V, V->vmax);
    }
    fputs("end\n", out);
    free(g);
    free(den);
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
