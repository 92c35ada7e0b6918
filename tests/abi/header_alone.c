#include "qhost/qh_plugin.h"
