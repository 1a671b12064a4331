/*
 * cmd_inspect.c: `cellm inspect -m DIR`: what a checkpoint is and how it is stored.
 *
 * Loads the model as every other command does (so anything inspect shows, the engine
 * accepted) and prints, one fact per line: the family and dimensions, the attention
 * layout (heads, RoPE, sliding layers, soft-caps), the block structure, the storage of
 * each tensor group, parameters and bytes, the shard files and the load warnings.
 *
 * Everything it prints comes from cellm_model_info (cellm.h); how storage is summarised is
 * said in src/model/info.c. `--families` lists the model types cellm runs.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common.h"

static void print_model(const char *dir, const struct cellm_model_info *m)
{
    printf("model        %s\n", dir);
    printf("family       %s\n", m->family);
    printf("dimensions   vocab %d, hidden %d, layers %d, ffn %d, max positions %d\n", m->vocab,
           m->dim, m->n_layers, m->ffn_dim, m->max_pos);
    printf("attention    heads %d, kv heads %d, head_dim %d, rotary dims %d, scale %.6g\n",
           m->n_heads, m->n_kv_heads, m->head_dim, m->rot_dims, m->attn_scale);
    printf("rope         %s\n", m->rope);
    if (m->n_sliding) {
        printf("sliding      window %d on %d of %d layers (%s)\n", m->window, m->n_sliding,
               m->n_layers, m->sliding_layers);
        if (m->rope_local) printf("rope local   %s\n", m->rope_local);
    } else {
        printf("sliding      none\n");
    }
    if (m->sinks) printf("sinks        %s\n", m->sinks);
    if (m->positions) printf("positions    %s\n", m->positions);
    if (m->state) printf("state        %s\n", m->state);
    if (m->mla) printf("latent attn  %s\n", m->mla);
    if (m->attn_softcap || m->final_softcap)
        printf("soft-caps    attention %g, final %g\n", m->attn_softcap, m->final_softcap);
    else
        printf("soft-caps    none\n");
    printf("block        %s\n", m->block);
    if (m->n_moe_layers)
        printf("experts      %d experts, %d per token, ffn %d, %s, on %d of %d layers (%s)%s\n",
               m->n_experts, m->n_experts_used, m->moe_ffn_dim, m->experts_layout, m->n_moe_layers,
               m->n_layers, m->moe_layers, m->norm_topk_prob ? ", top-k renormalised" : "");
    if (m->router) printf("router       %s\n", m->router);
    if (m->shared_experts) printf("shared       %s\n", m->shared_experts);
    if (m->layer_notes) printf("layers       %s\n", m->layer_notes);
    if (m->expert_act) printf("expert act   %s\n", m->expert_act);
    printf("tokens       bos %d, eos", m->bos);
    for (int i = 0; i < m->n_eos; i++)
        printf("%s%d", i ? "," : " ", m->eos[i]);
    printf("%s\n", m->n_eos ? "" : " none");
    if (m->quantization) printf("quantization %s\n", m->quantization);
    printf("storage\n");
    for (int i = 0; i < m->n_storage; i++)
        printf("  %-24s %s\n", m->storage[i].key, m->storage[i].value);
    uint64_t p = m->n_params, b = m->n_bytes;
    printf("parameters   %llu (%.3g M)\n", (unsigned long long)p, (double)p / 1e6);
    printf("bytes        %llu (%.3g MiB, %.2f bits per parameter)\n", (unsigned long long)b,
           (double)b / (1024.0 * 1024.0), p ? 8.0 * (double)b / (double)p : 0.0);
    printf("names        %s", m->names);
    if (m->n_ignored) printf(" (%d tensors of other towers ignored)", m->n_ignored);
    printf("\n");
    printf("shards       %d\n", m->n_shards);
    for (int i = 0; i < m->n_shards; i++)
        printf("  %-24s %llu bytes, %d tensors\n", m->shards[i].file,
               (unsigned long long)m->shards[i].bytes, m->shards[i].n_tensors);
    printf("device       %s\n", m->device);
    if (m->warnings[0]) {
        printf("warnings\n");
        const char *w = m->warnings;
        while (*w) {
            const char *e = strchr(w, '\n');
            int len = e ? (int)(e - w) : (int)strlen(w);
            printf("  %.*s\n", len, w);
            w += len + (e ? 1 : 0);
        }
    } else {
        printf("warnings     none\n");
    }
}

/* `cellm inspect --families`: the supported model types as the README's table rows (the
 * README's list is this output; tests/test_families.sh compares them). */
static void print_families(void)
{
    printf("| model_type | family |\n|---|---|\n");
    const char *title;
    for (int i = 0; cellm_family_name(i, &title); i++)
        printf("| `%s` | %s |\n", cellm_family_name(i, NULL), title);
}

int cellm_cmd_inspect(int argc, char **argv)
{
    static const char *const flags[] = {
        "--help",         "-h",         "-m", "--model",       "--download",
        "--device",       "--threads",  "-t", "--pjrt-plugin", "--exec-opt",
        "--exec-options", "--families", NULL};
    struct cli_opts o = {0};
    o.mp = cellm_model_params_default();
    o.mp.n_threads = 1; /* inspect computes nothing */
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cellm inspect -m MODEL [options]\n"
                   "       cellm inspect --families\n"
                   "  describes a checkpoint: family, dimensions, attention layout, storage of\n"
                   "  each tensor group, parameters, bytes, shards and warnings\n" CLI_COMMON_HELP
                   "  --families           list the supported model types (a Markdown table)\n"
                   "  -h, --help           this text\n");
            return 0;
        }
        if (!strcmp(argv[i], "--families")) {
            print_families();
            return 0;
        }
        cli_unknown("inspect", argv[i], flags);
        return 2;
    }
    if (!cli_resolve(&o, "inspect")) return 2;
    struct cellm_model *m = cli_load_model(&o, "inspect");
    if (!m) return 1;
    print_model(o.model_dir, cellm_model_info(m));
    cellm_model_free(m);
    return 0;
}
