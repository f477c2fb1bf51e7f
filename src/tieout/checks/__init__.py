"""Built-in checks, one module per check family, all registered in `CHECKS`."""

from tieout.checks import billing_subscriptions as _billing_subscriptions  # noqa: F401
from tieout.checks import crm_operations as _crm_operations  # noqa: F401
from tieout.checks import gateway_billing as _gateway_billing  # noqa: F401
from tieout.checks import gl_cash as _gl_cash  # noqa: F401
from tieout.checks import pre_invoice as _pre_invoice  # noqa: F401
from tieout.checks.registry import (
    CHECKS,
    FINDING_COLUMNS,
    Check,
    CheckContext,
    CheckParams,
    check_params,
    findings_table,
    month_of,
    ref,
    refs,
    register_check,
)

__all__ = ["CHECKS", "FINDING_COLUMNS", "Check", "CheckContext", "CheckParams", "check_params", "findings_table",
           "month_of", "ref", "refs", "register_check"]
