/* qhost.h - everything a plugin author includes. */
#ifndef QHOST_H
#define QHOST_H

#include "qh_graph.h"
#include "qh_log.h"
#include "qh_parallel.h"
#include "qh_plugin.h"
#include "qh_quant.h"
#include "qh_rng.h"
#include "qh_status.h"
#include "qh_tensor.h"
#include "qh_version.h"

#endif /* QHOST_H */
