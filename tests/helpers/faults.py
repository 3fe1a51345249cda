"""Faults that tests mix into real backends."""


class LosesFirstCreate:
    """A backend that creates the job, then loses the first response: what a dropped connection does."""

    lost = 0

    def create_job(self, spec, client_token=None):
        arn = super().create_job(spec, client_token)
        if type(self).lost == 0:
            type(self).lost += 1
            raise ConnectionError("connection reset before the response arrived")
        return arn
