import asyncio

from server.config import ModelConfig
from server.dispatch import CoreBudget, DispatchPlan, parameter_count


def _model(name, parameters, threads=0, weight=1.0):
    return ModelConfig(
        name=name,
        path="/x.gguf",
        package=None,
        weight=weight,
        parameters=parameters,
        threads=threads,
    )


def test_parameter_count_units():
    assert parameter_count(_model("a", "135M")) == 135e6
    assert parameter_count(_model("a", "7.3B")) == 7.3e9
    assert parameter_count(_model("a", "")) > parameter_count(_model("b", "70B"))


def test_plan_orders_smallest_first():
    models = [_model("big", "7B"), _model("small", "135M"), _model("mid", "2.5B")]
    addresses = {m.name: "127.0.0.1:1" for m in models}
    plan = DispatchPlan(models, addresses, {"127.0.0.1": 2})
    assert [slot.model.name for slot in plan.slots] == ["small", "mid", "big"]
    assert [slot.cores for slot in plan.slots] == [2, 2, 2]


def test_remote_hosts_without_budget_run_all_at_once():
    models = [_model("a", "7B", threads=8), _model("b", "4B", threads=8)]
    plan = DispatchPlan(models, {"a": "node1:5", "b": "node1:6"}, {})
    assert plan.budgets["node1"].cores == 16


def test_core_budget_serves_in_queue_order():
    async def scenario():
        budget = CoreBudget(2)
        order = []

        async def job(name, cores):
            await budget.acquire(cores)
            order.append(name)
            await asyncio.sleep(0.01)
            budget.release(cores)

        await asyncio.gather(job("first", 2), job("second", 2), job("third", 1))
        return order

    assert asyncio.run(scenario()) == ["first", "second", "third"]


def test_core_budget_cancelled_waiter_frees_its_place():
    async def scenario():
        budget = CoreBudget(1)
        await budget.acquire(1)
        waiter = asyncio.create_task(budget.acquire(1))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        budget.release(1)
        await asyncio.wait_for(budget.acquire(1), timeout=1)
        return True

    assert asyncio.run(scenario())


def test_plans_share_host_budgets():
    models = [_model("a", "135M", threads=2), _model("b", "270M", threads=2)]
    addresses = {m.name: "127.0.0.1:1" for m in models}
    shared = {}
    first = DispatchPlan(models, addresses, {"127.0.0.1": 2}, budgets=shared)
    second = DispatchPlan(models, addresses, {"127.0.0.1": 2}, budgets=shared)
    assert first.budgets["127.0.0.1"] is second.budgets["127.0.0.1"]
