"""A worker's clients are closed by its app after everything that uses them has stopped."""

from __future__ import annotations

from mode import Service

from shared.faust_app import owns


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class User(Service):
    """Stands for an agent or the web server: uses the client until it stops."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.saw_closed_at_stop: bool | None = None

    async def on_stop(self) -> None:
        self.saw_closed_at_stop = self.client.closed


async def test_an_owned_client_is_closed_only_after_the_services_children_stopped() -> None:
    client = Client()
    user = User(client)
    owner = Service()
    owner.add_dependency(user)
    owns(owner, client)

    await owner.start()
    assert not client.closed
    await owner.stop()

    assert user.saw_closed_at_stop is False
    assert client.closed


async def test_every_owned_client_is_closed() -> None:
    clients = [Client(), Client()]
    owner = Service()
    for c in clients:
        owns(owner, c)
    await owner.start()
    await owner.stop()
    assert all(c.closed for c in clients)
