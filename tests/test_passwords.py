from auth.passwords import PasswordHasher


def test_production_parameters_hash_with_argon2id_and_verify():
    hasher = PasswordHasher()  # the defaults production uses
    stored = hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$") and "m=65536,t=3,p=4" in stored
    assert hasher.verify("correct horse battery staple", stored) == (True, None)
    assert hasher.verify("wrong", stored)[0] is False


def test_a_hash_with_old_parameters_is_upgraded_at_the_next_sign_in():
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("a long password here")
    ok, upgraded = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).verify("a long password here", old)
    assert ok and upgraded is not None and "m=2048,t=2" in upgraded


def test_an_unreadable_stored_hash_is_a_failed_sign_in_not_an_error():
    assert PasswordHasher().verify("anything", "not-a-hash") == (False, None)
