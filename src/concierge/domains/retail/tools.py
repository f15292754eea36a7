"""The retail tools an agent gets: tau2's names, arguments and results, served by the store's HTTP API.

Who the customer is comes from the session, not from the model: the two lookup tools bind the
session to the user id they found (`ToolContext.bind_customer`), and every other call sends the
bound id as `X-Acting-User`, so the store refuses anything that belongs to someone else. Every
call also names the session's tenant in `X-Tenant`, so a server with one store per tenant sends
it to that tenant's store (`tenant_stores.TenantStores`). A
refusal is a `ToolError` carrying the store's message, which is tau2's own wording.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from ...core.errors import ToolError
from ...tools.http import call_api
from ...tools.tool import CUSTOMER_KEY, Tool, ToolContext, make_tool
from .calculator import calculate as _calculate
from .preconditions import store_preconditions

WRITE_SCOPES: tuple[str, ...] = ("retail:write",)
# The store a request is for, when one server holds a store per tenant (see `tenant_stores`).
TENANT_HEADER = "X-Tenant"


def tenant_header(context: ToolContext | None) -> dict[str, str]:
    """`X-Tenant` naming the session's tenant (from authentication): which store a tenant router picks."""
    return {} if context is None else {TENANT_HEADER: context.principal.tenant}


def _acting_user(context: ToolContext | None) -> str:
    user_id = None if context is None else context.customer_id
    if not user_id:
        raise ToolError("Identify the customer first: find their user id by email, or by name and zip code")
    return str(user_id)


async def _request(client: httpx.AsyncClient, method: str, path: str, context: ToolContext | None, *,
                   acting: bool = True, body: Any = None, params: dict[str, str] | None = None) -> Any:
    """One call to the store, as the signed-in customer (never an id the model passed)."""
    headers = tenant_header(context)
    if acting:
        headers["X-Acting-User"] = _acting_user(context)
    return await call_api(client, method, path, context, json=body, params=params, headers=headers)


def _order(order_id: str) -> str:
    return "/orders/" + quote(order_id, safe="")


def _address(address1: str, address2: str, city: str, state: str, country: str, zip: str) -> dict[str, str]:
    return {"address1": address1, "address2": address2, "city": city, "state": state, "country": country,
            "zip": zip}


def retail_tools(client: httpx.AsyncClient, *, confirm: bool = True) -> list[Tool]:
    """tau2's sixteen retail tools over a client of the store's API.

    `confirm` gates the writes behind the customer's confirmation, and checks first (as the
    identified customer, see `preconditions`) that the store would accept them, so the customer
    is never asked about an action bound to be refused. Without it (evaluations replaying tau2)
    the store's own refusal, in tau2's words, is the only check.
    """

    async def find_user_id_by_email(email: str, context: ToolContext) -> str:
        """Look up a customer's user id by their email address; this also identifies the customer.

        Args:
            email: The customer's email address, e.g. 'jane.doe@example.com'.
        """
        params = {"email": email}
        found = await _request(client, "GET", "/users/by-email", context, acting=False, params=params)
        context.bind_customer(str(found["user_id"]))
        return str(found["user_id"])

    async def find_user_id_by_name_zip(first_name: str, last_name: str, zip: str,
                                       context: ToolContext) -> str:
        """Look up a customer's user id by full name and zip code, when the email is not known.

        Args:
            first_name: The customer's first name, e.g. 'Jane'.
            last_name: The customer's last name, e.g. 'Doe'.
            zip: The zip code of the customer's default address, e.g. '10001'.
        """
        params = {"first_name": first_name, "last_name": last_name, "zip": zip}
        found = await _request(client, "GET", "/users/by-name-zip", context, acting=False, params=params)
        context.bind_customer(str(found["user_id"]))
        return str(found["user_id"])

    async def get_user_details(user_id: str, context: ToolContext) -> dict[str, Any]:
        """Show a customer's profile: name, default address, email, payment methods and order ids.

        Args:
            user_id: The customer's user id, e.g. 'jane_doe_1234'.
        """
        result: dict[str, Any] = await _request(client, "GET", "/users/" + quote(user_id, safe=""), context)
        return result

    async def get_order_details(order_id: str, context: ToolContext) -> dict[str, Any]:
        """Show an order: status, items, shipping address, fulfilments and payments.

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
        """
        result: dict[str, Any] = await _request(client, "GET", _order(order_id), context)
        return result

    async def get_product_details(product_id: str, context: ToolContext) -> dict[str, Any]:
        """Show a product type and every variant of it (item id, options, availability, price).

        Args:
            product_id: The product id, e.g. '1656367028' (not an item id).
        """
        path = "/products/" + quote(product_id, safe="")
        result: dict[str, Any] = await _request(client, "GET", path, context, acting=False)
        return result

    async def get_item_details(item_id: str, context: ToolContext) -> dict[str, Any]:
        """Show one item variant: options, availability and price.

        Args:
            item_id: The item id, e.g. '4107812777' (not a product id).
        """
        path = "/items/" + quote(item_id, safe="")
        result: dict[str, Any] = await _request(client, "GET", path, context, acting=False)
        return result

    async def list_all_product_types(context: ToolContext) -> str:
        """List every product type's name and product id, as JSON sorted by name."""
        mapping = await _request(client, "GET", "/products", context, acting=False)
        return json.dumps(mapping, sort_keys=True)

    async def cancel_pending_order(order_id: str, reason: str, context: ToolContext) -> dict[str, Any]:
        """Cancel a pending order and refund its payments (gift cards at once, others in 5-7 business days).

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            reason: Either 'no longer needed' or 'ordered by mistake'.
        """
        result: dict[str, Any] = await _request(client, "POST", _order(order_id) + "/cancel", context,
                                                body={"reason": reason})
        return result

    async def modify_pending_order_items(order_id: str, item_ids: list[str], new_item_ids: list[str],
                                         payment_method_id: str, context: ToolContext) -> dict[str, Any]:
        """Swap items of a pending order for other variants of the same products; possible once per order.

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            item_ids: The item ids to replace; repeat an id to replace several of it.
            new_item_ids: The replacement item ids, position by position, each of the same product.
            payment_method_id: The customer's payment method that pays or receives the price difference.
        """
        body = {"item_ids": item_ids, "new_item_ids": new_item_ids, "payment_method_id": payment_method_id}
        path = _order(order_id) + "/items"
        result: dict[str, Any] = await _request(client, "POST", path, context, body=body)
        return result

    async def modify_pending_order_address(order_id: str, address1: str, address2: str, city: str, state: str,
                                           country: str, zip: str,
                                           context: ToolContext) -> dict[str, Any]:
        """Change the shipping address of a pending order.

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            address1: First address line, e.g. '12 Main St'.
            address2: Second address line, e.g. 'Apt 4', or ''.
            city: City, e.g. 'Austin'.
            state: State, e.g. 'TX'.
            country: Country, e.g. 'USA'.
            zip: Zip code, e.g. '78701'.
        """
        body = _address(address1, address2, city, state, country, zip)
        path = _order(order_id) + "/address"
        result: dict[str, Any] = await _request(client, "PUT", path, context, body=body)
        return result

    async def modify_pending_order_payment(order_id: str, payment_method_id: str,
                                           context: ToolContext) -> dict[str, Any]:
        """Pay a pending order with another of the customer's payment methods; the old one is refunded.

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            payment_method_id: The new payment method, e.g. 'gift_card_1234567' or 'credit_card_1234567'.
        """
        body = {"payment_method_id": payment_method_id}
        path = _order(order_id) + "/payment"
        result: dict[str, Any] = await _request(client, "PUT", path, context, body=body)
        return result

    async def modify_user_address(user_id: str, address1: str, address2: str, city: str, state: str,
                                  country: str, zip: str, context: ToolContext) -> dict[str, Any]:
        """Change a customer's default address.

        Args:
            user_id: The customer's user id, e.g. 'jane_doe_1234'.
            address1: First address line, e.g. '12 Main St'.
            address2: Second address line, e.g. 'Apt 4', or ''.
            city: City, e.g. 'Austin'.
            state: State, e.g. 'TX'.
            country: Country, e.g. 'USA'.
            zip: Zip code, e.g. '78701'.
        """
        body = _address(address1, address2, city, state, country, zip)
        path = "/users/" + quote(user_id, safe="") + "/address"
        result: dict[str, Any] = await _request(client, "PUT", path, context, body=body)
        return result

    async def return_delivered_order_items(order_id: str, item_ids: list[str], payment_method_id: str,
                                           context: ToolContext) -> dict[str, Any]:
        """Request a return of items from a delivered order; the customer gets return instructions by email.

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            item_ids: The item ids to return; repeat an id to return several of it.
            payment_method_id: Where the refund goes: the order's original payment method or a gift card.
        """
        body = {"item_ids": item_ids, "payment_method_id": payment_method_id}
        path = _order(order_id) + "/return"
        result: dict[str, Any] = await _request(client, "POST", path, context, body=body)
        return result

    async def exchange_delivered_order_items(order_id: str, item_ids: list[str], new_item_ids: list[str],
                                             payment_method_id: str, context: ToolContext) -> dict[str, Any]:
        """Request an exchange of delivered items for other variants of the same products (once per order).

        Args:
            order_id: The order id, which starts with '#', e.g. '#W1234567'.
            item_ids: The item ids to exchange; repeat an id to exchange several of it.
            new_item_ids: The item ids wanted instead, position by position, each of the same product.
            payment_method_id: The customer's payment method that pays or receives the price difference.
        """
        body = {"item_ids": item_ids, "new_item_ids": new_item_ids, "payment_method_id": payment_method_id}
        result: dict[str, Any] = await _request(client, "POST", _order(order_id) + "/exchange", context,
                                                body=body)
        return result

    def calculate(expression: str) -> str:
        """Work out an arithmetic expression (numbers, + - * /, parentheses), rounded to 2 decimals.

        Args:
            expression: The expression, e.g. '(19.99 + 5) * 2'.
        """
        return _calculate(expression)

    def transfer_to_human_agents(summary: str) -> str:
        """Hand the customer to a human agent, only if they ask for one or the request is beyond these tools.

        Args:
            summary: A short summary of the customer's issue for the human agent.
        """
        return "Transfer successful"

    async def read_order(order_id: str, context: ToolContext) -> Any:
        """An order as the identified customer sees it (the preconditions' read, never ledgered)."""
        return await _request(client, "GET", _order(order_id), context)

    reads = [find_user_id_by_email, find_user_id_by_name_zip, get_user_details, get_order_details,
             get_product_details, get_item_details, list_all_product_types]
    writes = [cancel_pending_order, modify_pending_order_items, modify_pending_order_address,
              modify_pending_order_payment, modify_user_address, return_delivered_order_items,
              exchange_delivered_order_items]
    return [
        *(make_tool(fn, effect="read") for fn in reads),
        *(make_tool(fn, effect="write", scopes=WRITE_SCOPES, idempotent=True, confirm=confirm,
                    state_keys=(CUSTOMER_KEY,),
                    requires=store_preconditions(read_order, fn.__name__) if confirm else ())
          for fn in writes),
        make_tool(calculate, effect="read"),
        make_tool(transfer_to_human_agents, effect="read"),
    ]
