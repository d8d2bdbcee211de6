"""A Prefect runner serving the voucher export and maintenance deployments (the fault tests
start it as a real process: ``python -m tests.integration.fault_runner``)."""

from prefect import serve

from flows.exports import FLOWS
from flows.maintenance import maintain

if __name__ == "__main__":
    serve(
        FLOWS["voucher"].to_deployment(name="export-vouchers"),
        maintain.to_deployment(name="maintenance"),
        limit=10,
    )
