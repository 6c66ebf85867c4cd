"""The credit-system link: the contract (:mod:`.contract`) and the reference credit
service shipped with the project (:mod:`.service`, ``cloudcounter credit-service serve``).
The hub's adapter is :mod:`cloudcounter.business.credit_client`."""
