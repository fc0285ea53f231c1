from auth.roles import Role


def test_login_and_me(world, client):
    user = world.user(Role.coordinator)
    response = client.get("/v1/me", headers=world.headers(user))
    assert response.status_code == 200
    assert response.json()["email"] == user.email
    assert response.json()["role"] == "coordinator"
