-- strata's cooperative consumers for PgQ (pgq_coop is not packaged for PostgreSQL 15).
-- Several subconsumers share one registered consumer's stream: each call hands the next
-- batch of the main consumer to one subconsumer and moves the main position past it at
-- once, so the others get the following batches in parallel. A subconsumer is a pgq
-- consumer named 'main.sub' whose pgq.subscription row carries the main consumer's sub_id,
-- so pgq's own get_batch_cursor, event_retry and finish_batch work on its batch, and
-- retried events come back to whichever subconsumer takes the batch holding them.
-- A subconsumer idle between batches has no position (sub_last_tick NULL) so it never holds
-- back rotation; one inactive longer than dead_interval loses its batch to the next caller
-- (under a new batch id, so a slow holder cannot finish it any more: dead_interval must be
-- longer than any batch takes to process).

create schema if not exists strata_pgq;

create table if not exists strata_pgq.coop_sub (
    sub_queue      int4 not null,
    sub_consumer   int4 not null,
    main_consumer  int4 not null,
    primary key (sub_queue, sub_consumer)
);

-- The main consumer's subscription, locked: one subconsumer at a time moves the position.
create or replace function strata_pgq.coop_main(i_queue text, i_consumer text,
    out sub_id int4, out sub_queue int4, out sub_consumer int4)
language plpgsql as $$
begin
    select s.sub_id, s.sub_queue, s.sub_consumer into sub_id, sub_queue, sub_consumer
      from pgq.subscription s
      join pgq.consumer c on c.co_id = s.sub_consumer
      join pgq.queue q on q.queue_id = s.sub_queue
     where q.queue_name = i_queue and c.co_name = i_consumer
       for update of s;
    if not found then
        raise exception 'consumer % is not registered on queue %', i_consumer, i_queue;
    end if;
end $$;

create or replace function strata_pgq.coop_register(i_queue text, i_consumer text, i_sub text)
returns int4 language plpgsql as $$
declare
    m record;
    v_co int4;
begin
    select * into m from strata_pgq.coop_main(i_queue, i_consumer);
    select co_id into v_co from pgq.consumer where co_name = i_consumer || '.' || i_sub;
    if not found then
        insert into pgq.consumer (co_name) values (i_consumer || '.' || i_sub) returning co_id into v_co;
    end if;
    perform 1 from pgq.subscription where sub_queue = m.sub_queue and sub_consumer = v_co;
    if found then
        return 0;
    end if;
    insert into pgq.subscription (sub_id, sub_queue, sub_consumer, sub_last_tick, sub_active)
         values (m.sub_id, m.sub_queue, v_co, null, now());
    -- A row left behind by a main consumer unregistered before its subconsumers is
    -- replaced.
    insert into strata_pgq.coop_sub values (m.sub_queue, v_co, m.sub_consumer)
        on conflict (sub_queue, sub_consumer) do update set main_consumer = excluded.main_consumer;
    return 1;
end $$;

create or replace function strata_pgq.coop_unregister(i_queue text, i_consumer text, i_sub text)
returns int4 language plpgsql as $$
declare
    m record;
    me record;
begin
    select * into m from strata_pgq.coop_main(i_queue, i_consumer);
    select s.sub_consumer, s.sub_batch into me
      from pgq.subscription s
      join strata_pgq.coop_sub k on k.sub_queue = s.sub_queue and k.sub_consumer = s.sub_consumer
      join pgq.consumer c on c.co_id = s.sub_consumer
     where s.sub_queue = m.sub_queue and k.main_consumer = m.sub_consumer
       and c.co_name = i_consumer || '.' || i_sub
       for update of s;
    if not found then
        return 0;
    end if;
    if me.sub_batch is not null then
        raise exception 'subconsumer %.% holds batch %: finish it, or let another subconsumer take it over',
            i_consumer, i_sub, me.sub_batch;
    end if;
    -- Not pgq.unregister_consumer: it would delete the retry events of the shared sub_id.
    delete from pgq.subscription where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
    delete from strata_pgq.coop_sub where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
    -- The name goes when nothing uses it any more, as pgq.unregister_consumer does.
    delete from pgq.consumer c where c.co_id = me.sub_consumer
       and not exists (select 1 from pgq.subscription s where s.sub_consumer = c.co_id);
    return 1;
end $$;

-- The lowest tick a batch of the main consumer's stream may still start at: the start of
-- the oldest batch a subconsumer holds, or the main position when none is held. Every
-- batch ending at or below it was finished and is never handed out again, so the
-- exactly-once records of those batches (strata_pgq.completed_batch, in the target) can
-- go. It only grows: new batches start at the main position, a take-over keeps the range.
create or replace function strata_pgq.coop_finished_below(i_queue int4, i_main int4)
returns int8 language sql as $$
    select least(
        (select s.sub_last_tick from pgq.subscription s
          where s.sub_queue = i_queue and s.sub_consumer = i_main),
        (select min(s.sub_last_tick) from pgq.subscription s
           join strata_pgq.coop_sub k on k.sub_queue = s.sub_queue and k.sub_consumer = s.sub_consumer
          where s.sub_queue = i_queue and k.main_consumer = i_main and s.sub_batch is not null))
$$;

-- The result gained finished_below: a changed result type needs the old function gone.
drop function if exists strata_pgq.coop_next_batch(text, text, text, interval);

create or replace function strata_pgq.coop_next_batch(
    i_queue text, i_consumer text, i_sub text, i_dead_interval interval,
    out batch_id int8, out cur_tick_id int8, out prev_tick_id int8,
    out cur_tick_time timestamptz, out prev_tick_time timestamptz,
    out cur_tick_event_seq int8, out prev_tick_event_seq int8,
    out finished_below int8)
language plpgsql as $$
declare
    m record;
    me record;
    dead record;
    nb record;
begin
    select * into m from strata_pgq.coop_main(i_queue, i_consumer);
    select s.sub_consumer, s.sub_batch, s.sub_last_tick, s.sub_next_tick into me
      from pgq.subscription s
      join strata_pgq.coop_sub k on k.sub_queue = s.sub_queue and k.sub_consumer = s.sub_consumer
      join pgq.consumer c on c.co_id = s.sub_consumer
     where s.sub_queue = m.sub_queue and k.main_consumer = m.sub_consumer
       and c.co_name = i_consumer || '.' || i_sub
       for update of s;
    if not found then
        raise exception 'subconsumer %.% is not registered on queue %', i_consumer, i_sub, i_queue;
    end if;

    -- Take over the batch of a subconsumer silent for longer than i_dead_interval.
    if me.sub_batch is null and i_dead_interval is not null then
        select s.sub_consumer, s.sub_batch, s.sub_last_tick, s.sub_next_tick into dead
          from pgq.subscription s
          join strata_pgq.coop_sub k on k.sub_queue = s.sub_queue and k.sub_consumer = s.sub_consumer
         where s.sub_queue = m.sub_queue and k.main_consumer = m.sub_consumer
           and s.sub_consumer <> me.sub_consumer
           and s.sub_batch is not null
           and s.sub_active < now() - i_dead_interval
         order by s.sub_active
         limit 1
           for update of s;
        if found then
            -- Same tick range under a new batch id: if the silent one was only slow, its
            -- finish_batch and cursor on the old id find nothing instead of closing or
            -- reading the batch it lost.
            update pgq.subscription
               set sub_batch = null, sub_next_tick = null, sub_last_tick = null
             where sub_queue = m.sub_queue and sub_consumer = dead.sub_consumer;
            me.sub_batch := nextval('pgq.batch_id_seq');
            update pgq.subscription
               set sub_batch = me.sub_batch, sub_last_tick = dead.sub_last_tick,
                   sub_next_tick = dead.sub_next_tick, sub_active = now()
             where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
            me.sub_last_tick := dead.sub_last_tick;
            me.sub_next_tick := dead.sub_next_tick;
        end if;
    end if;

    if me.sub_batch is not null then
        -- The same batch again until it is finished, as pgq.next_batch does.
        update pgq.subscription set sub_active = now()
         where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
        select me.sub_batch, t2.tick_id, t1.tick_id, t2.tick_time, t1.tick_time,
               t2.tick_event_seq, t1.tick_event_seq
          into batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time,
               cur_tick_event_seq, prev_tick_event_seq
          from pgq.tick t1, pgq.tick t2
         where t1.tick_queue = m.sub_queue and t1.tick_id = me.sub_last_tick
           and t2.tick_queue = m.sub_queue and t2.tick_id = me.sub_next_tick;
        finished_below := strata_pgq.coop_finished_below(m.sub_queue, m.sub_consumer);
        return;
    end if;

    select * into nb from pgq.next_batch_info(i_queue, i_consumer);
    if nb.batch_id is null then
        update pgq.subscription set sub_active = now()
         where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
        return;
    end if;
    -- The main position moves past the batch now; the batch moves to this subconsumer.
    update pgq.subscription
       set sub_last_tick = nb.cur_tick_id, sub_next_tick = null, sub_batch = null, sub_active = now()
     where sub_queue = m.sub_queue and sub_consumer = m.sub_consumer;
    update pgq.subscription
       set sub_batch = nb.batch_id, sub_last_tick = nb.prev_tick_id,
           sub_next_tick = nb.cur_tick_id, sub_active = now()
     where sub_queue = m.sub_queue and sub_consumer = me.sub_consumer;
    batch_id := nb.batch_id;
    cur_tick_id := nb.cur_tick_id;
    prev_tick_id := nb.prev_tick_id;
    cur_tick_time := nb.cur_tick_time;
    prev_tick_time := nb.prev_tick_time;
    cur_tick_event_seq := nb.cur_tick_event_seq;
    prev_tick_event_seq := nb.prev_tick_event_seq;
    finished_below := strata_pgq.coop_finished_below(m.sub_queue, m.sub_consumer);
end $$;

create or replace function strata_pgq.coop_finish_batch(i_batch_id int8)
returns int4 language plpgsql as $$
declare
    me record;
begin
    select s.sub_queue, s.sub_consumer into me
      from pgq.subscription s where s.sub_batch = i_batch_id for update;
    if not found then
        return 0;
    end if;
    perform pgq.finish_batch(i_batch_id);
    -- An idle subconsumer keeps no position: it must not hold back rotation.
    update pgq.subscription s set sub_last_tick = null
      from strata_pgq.coop_sub k
     where k.sub_queue = s.sub_queue and k.sub_consumer = s.sub_consumer
       and s.sub_queue = me.sub_queue and s.sub_consumer = me.sub_consumer;
    return 1;
end $$;
