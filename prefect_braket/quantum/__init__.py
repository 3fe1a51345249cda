"""The quantum-task side: programs, devices, results, local simulators, costs and budgets.

No Prefect here: `orchestration.blocks.BraketDevice` is the configuration a user saves, and this
package is what it delegates to.
"""
