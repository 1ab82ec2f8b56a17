"""The federated partition flow (DESIGN §5.7): partition queries over exactly the resources a member may
discover and invoke, and hop-by-hop execution of a chosen plan through the FHS proxies."""
