/* test_torch_lenet.c - a LeNet-5 trained in PyTorch (tests/golden/gen_lenet_torch.py), saved as
 * safetensors with PyTorch's names, loads unchanged into the lenet5 plugin's graph and evaluates
 * on the Fashion-MNIST test set to PyTorch's accuracy within 0.05 points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_safetensors.h"

#define FIXTURE QH_TEST_DATA "/models/lenet5_torch.safetensors"

static void test_torch_lenet_accuracy(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_registry *reg = qh_registry_new();
    assert_int_equal(qh_registry_load_file(reg, QH_BUILD_ROOT "/plugins/models/lenet5/qh-model-lenet5.so", &err),
                     QH_OK);
    assert_int_equal(qh_registry_load_file(reg, QH_BUILD_ROOT "/plugins/datasets/idx/qh-dataset-idx.so", &err),
                     QH_OK);
    const qh_plugin *mp = qh_registry_find(reg, QH_KIND_MODEL, "lenet5");
    const qh_plugin *dp = qh_registry_find(reg, QH_KIND_DATASET, "idx");
    assert_non_null(mp);
    assert_non_null(dp);
    void *mcfg = qh_config_new(mp->params, mp->config_size);
    void *dcfg = qh_config_new(dp->params, dp->config_size);
    qh_dataset ds;
    qh_status st = qh_dataset_open(&ds, dp, dcfg, 0, &err);
    if (st != QH_OK)
        fail_msg("Fashion-MNIST must be installed (dataset-fashion-mnist): %s", err.msg);
    qh_graph *g = qh_graph_new(ds.info.channels, ds.info.height, ds.info.width, ds.info.num_classes, &err);
    qh_model_input in = {ds.info.channels, ds.info.height, ds.info.width, ds.info.num_classes};
    assert_int_equal(qh_model_build(mp, mcfg, &in, g, &err), QH_OK);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    assert_int_equal(qh_graph_n_params(g), 61706);
    st = qh_model_load(g, FIXTURE, &err);
    if (st != QH_OK)
        fail_msg("%s", err.msg);

    qh_safetensors *file = NULL;
    assert_int_equal(qh_safetensors_read(FIXTURE, &file, &err), QH_OK);
    double torch_top1 = atof(qh_safetensors_meta(file, "test_top1"));
    double torch_loss = atof(qh_safetensors_meta(file, "test_loss"));
    qh_eval_result r;
    assert_int_equal(qh_evaluate(g, &ds, QH_SPLIT_TEST, 0, 1000, NULL, &r, &err), QH_OK);
    assert_int_equal(r.n, 10000);
    print_message("qhost top-1 %.2f %% loss %.5f; PyTorch top-1 %.2f %% loss %.5f\n", r.top1, r.loss, torch_top1,
                  torch_loss);
    assert_true(fabs(r.top1 - torch_top1) <= 0.05);
    assert_true(fabs(r.loss - torch_loss) <= 1e-3);
    qh_safetensors_free(file);
    qh_graph_free(g);
    qh_dataset_close(&ds);
    qh_config_free(mp->params, mcfg);
    qh_config_free(dp->params, dcfg);
    qh_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_lenet_accuracy),
    };
    return cmocka_run_group_tests_name("torch_lenet", tests, NULL, NULL);
}
